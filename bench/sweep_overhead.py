"""Where a sweep's time goes: per trial and in total, time in training steps against everything else.

Runs a sweep (default: the README's ``search_spaces/ring8.yaml``, 16 trials, 2 at once) on a local Ray
into a temporary MLflow store, and prints one JSON line per trial and one for the sweep:

- ``steps_s``: time in training steps (the trials' own ``time_steps_s``, one per eval interval);
  ``eval_s``: sampling and scoring at evals; ``checkpoint_s``: writing the run-state folders;
- ``startup_s``: from Tune starting the trial to its first report, less that interval's steps, eval and
  checkpoint (the trial's process, Ray Train's controller and workers, building the models);
- ``teardown_s``: from the last report to Tune hearing that the trial ended;
- ``mlflow_s``: time the driver spent in the trial's MLflow calls (create the run, log each eval, end
  it; pictures included); it runs in the sweep's driver and may overlap the trial's own steps;
- ``other_s``: the rest of the trial's wall time (reports travelling from workers to the driver);
- ``overhead_s`` = wall - steps.

The sweep line: ``efficiency`` = sum of ``steps_s`` / (sweep wall x concurrent trials), with the sweep
wall from the call to the return (Ray already started; the rescoring of the best and registration
included); ``idle_slot_s``: slot time no trial held between the first trial's start and the last one's
end (Tune's gaps between trials); ``before_first_s`` / ``after_last_s``: set-up before the first trial
and the rescoring, registration and summary after the last.

    python bench/sweep_overhead.py                    # the default sweep, ~10 minutes on 2 CPUs
    python bench/sweep_overhead.py --num-samples 4    # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TIMED = ("time_steps_s", "time_eval_s", "time_checkpoint_s")


@dataclass
class TrialClock:
    """What the driver saw of one trial, in ``time.perf_counter`` seconds."""

    started: float | None = None
    ended: float | None = None
    received: list[float] = field(default_factory=list)  # when each eval reached the driver
    reports: list[dict[str, Any]] = field(default_factory=list)
    mlflow_s: float = 0.0
    status: str = ""


class TimedRun:
    """An MLflow trial run whose every call is timed; the ledger sees it as the run itself."""

    def __init__(self, inner, clock: TrialClock):
        self.inner, self.clock = inner, clock

    @property
    def run_id(self):
        return self.inner.run_id

    def _timed(self, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.clock.mlflow_s += time.perf_counter() - t0

    def start(self, config) -> None:
        self.clock.started = time.perf_counter()
        self._timed(self.inner.start, config)

    def on_eval(self, record) -> None:
        self.clock.received.append(time.perf_counter())
        self.clock.reports.append(dict(record.metrics))
        self._timed(self.inner.on_eval, record)

    def end(self, outcome) -> None:
        self.clock.ended = time.perf_counter()
        self.clock.status = outcome.status
        self._timed(self.inner.end, outcome)


def timed_sweep_class(clocks: dict[str, TrialClock]):
    """MlflowSweep, but each trial's run timed into ``clocks``."""
    from gan_ray.tracking.sweep import MlflowSweep

    class TimedSweep(MlflowSweep):
        def trial(self, trial_id, config, params):
            clock = clocks.setdefault(trial_id, TrialClock())
            return TimedRun(super().trial(trial_id, config, params), clock)

    return TimedSweep


def trial_breakdown(trial_id: str, c: TrialClock, t0: float) -> dict[str, Any]:
    sums = {k: sum(float(r.get(k, 0.0)) for r in c.reports) for k in TIMED}
    steps, evals, ckpt = sums["time_steps_s"], sums["time_eval_s"], sums["time_checkpoint_s"]
    wall = (c.ended or c.started) - c.started
    row: dict[str, Any] = {
        "measurement": "trial",
        "trial_id": trial_id,
        "status": c.status,
        "evals": len(c.reports),
        "start_s": c.started - t0,  # from the sweep's start: the timeline
        "end_s": (c.ended or c.started) - t0,
        "wall_s": wall,
        "steps_s": steps,
        "eval_s": evals,
        "checkpoint_s": ckpt,
        "mlflow_s": c.mlflow_s,
        "overhead_s": wall - steps,
    }
    if c.received:
        first = c.reports[0]
        row["startup_s"] = c.received[0] - c.started - sum(float(first.get(k, 0.0)) for k in TIMED)
        row["teardown_s"] = c.ended - c.received[-1] if c.ended else 0.0
        known = evals + ckpt + row["startup_s"] + row["teardown_s"]
        row["other_s"] = row["overhead_s"] - known
    return row


def idle_slot_seconds(clocks: list[TrialClock], slots: int) -> float:
    """Slot time between the first start and the last end that no trial held."""
    spans = [(c.started, c.ended) for c in clocks if c.started is not None and c.ended is not None]
    if not spans:
        return 0.0
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    return slots * (last - first) - sum(e - s for s, e in spans)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("space", nargs="?", default=str(ROOT / "search_spaces" / "ring8.yaml"))
    parser.add_argument("--num-samples", type=int, default=None, help="trials (default: the file's)")
    parser.add_argument("--label", default="", help="a name for this run in the output (e.g. before/after)")
    args = parser.parse_args()

    from gan_ray import api
    from gan_ray.ray.cluster import connect
    from gan_ray.ray.strategy import max_concurrent
    from gan_ray.search.load import load_search_space

    space = load_search_space(args.space)
    t0 = time.perf_counter()
    connect()
    ray_start = time.perf_counter() - t0
    clocks: dict[str, TrialClock] = {}
    import gan_ray.tracking.sweep as tracking_sweep

    tracking_sweep.MlflowSweep = timed_sweep_class(clocks)
    with tempfile.TemporaryDirectory(prefix="gan_ray_overhead_") as tmp:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # Tune's tables: stdout is for the JSON lines
            result = api.sweep(
                space,
                num_samples=args.num_samples,
                tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                storage_path=f"{tmp}/ray_results",
                study_storage=f"sqlite:///{tmp}/optuna.db",
                verbose=0,
            )
        t1 = time.perf_counter()
    slots = max_concurrent(space)
    rows = [trial_breakdown(tid, c, t0) for tid, c in clocks.items() if c.started is not None]
    for row in rows:
        print(json.dumps({"label": args.label, **row}), flush=True)
    timed = [c for c in clocks.values() if c.started is not None]
    steps = sum(r["steps_s"] for r in rows)
    wall = t1 - t0
    total = {
        "measurement": "sweep",
        "label": args.label,
        "space": Path(args.space).name,
        "trials": len(rows),
        "statuses": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
        "concurrent_trials": slots,
        "ray_start_s": ray_start,
        "wall_s": wall,
        "steps_s": steps,
        "efficiency": steps / (wall * slots),
        "median_overhead_s": statistics.median(r["overhead_s"] for r in rows) if rows else None,
        "idle_slot_s": idle_slot_seconds(timed, slots),
        "before_first_s": min(c.started for c in timed) - t0 if timed else None,
        "after_last_s": t1 - max(c.ended for c in timed if c.ended) if timed else None,
        "champion": result.best.trial_id if result.best else None,
        "champion_score": result.best.champion_score if result.best else None,
    }
    for key in ("eval_s", "checkpoint_s", "mlflow_s", "startup_s", "teardown_s", "other_s"):
        values = [r[key] for r in rows if key in r]
        total[f"median_{key}"] = statistics.median(values) if values else None
        total[f"sum_{key}"] = sum(values)
    print(json.dumps(total), flush=True)
    print(
        f"efficiency {total['efficiency']:.2f} | median overhead {total['median_overhead_s']:.1f} s/trial "
        f"(startup {total['median_startup_s']:.1f}, teardown {total['median_teardown_s']:.1f}, "
        f"eval {total['median_eval_s']:.1f}, checkpoint {total['median_checkpoint_s']:.1f}, "
        f"mlflow {total['median_mlflow_s']:.1f}, other {total['median_other_s']:.1f}) | "
        f"wall {wall:.0f} s, steps {steps:.0f} s, idle slots {total['idle_slot_s']:.0f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
