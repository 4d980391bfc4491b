"""The sweep's own tracking path under load: N trivial Tune trials at once, each reporting an eval (metrics
plus a small sample image, in a checkpoint) every few seconds, recorded by the sweep's real
:class:`~gan_ray.ray.ledger.TrialLedger` and :class:`~gan_ray.tracking.sweep.MlflowSweep` into a real
``mlflow server`` on loopback, with SQLite or PostgreSQL behind it.

Prints one JSON line per N: the time each report costs Tune's loop (the ledger's callbacks, ms), how far
the logged records lag behind the reports (s, seen by polling the server every ``--poll`` seconds), the
errors, and whether the records are complete once the sweep has ended.

    python bench/tracking_load.py --backend postgres --trials 8 64 256 --every 5 --reports 12
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import MlflowServer, Postgres  # noqa: E402

EVAL_EVERY = 10
METRICS = ("mode_distance", "objective", "loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")
REPORTED_AT = "bench_reported_at"

SPACE = """\
name: bench_tracking
base:
  data: {{name: ring8}}
  train: {{steps: {steps}, eval_every: {eval_every}}}
parameters:
  optim.lr_g: {{log_uniform: [1.0e-4, 1.0e-2]}}
budget: {{num_samples: {trials}}}
"""


def trivial_trial(config: dict, every_s: float, reports: int) -> None:
    """A Tune trial that trains nothing: every ``every_s`` seconds, an eval's metrics and a checkpoint
    holding a 64x64 sample image, as a sweep's trial reports them."""
    import numpy as np
    from PIL import Image
    from ray import tune

    rng = np.random.default_rng()
    time.sleep(rng.uniform(0, every_s))  # trials that start together do not report in lockstep
    for i in range(1, reports + 1):
        time.sleep(every_s)
        metrics = {k: float(rng.uniform()) for k in METRICS}
        with tempfile.TemporaryDirectory() as folder:
            pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(Path(folder) / "samples.png")
            tune.report(
                {**metrics, "step": i * EVAL_EVERY, "health": "ok", REPORTED_AT: time.time()},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


def timed_ledger(space, recorder):
    """The sweep's TrialLedger, its report callbacks timed: what each report costs Tune's loop."""
    from gan_ray.ray.ledger import TrialLedger

    class TimedLedger(TrialLedger):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cost: dict[tuple[str, int], float] = collections.defaultdict(float)
            self.reported: list[tuple[str, float, float]] = []  # trial, reported at, received at

        def on_trial_result(self, iteration, trials, trial, result, **info):
            started = time.perf_counter()
            super().on_trial_result(iteration, trials, trial, result, **info)
            if REPORTED_AT in result:
                key = (trial.trial_id, int(result["step"]))
                self.cost[key] += time.perf_counter() - started
                self.reported.append((trial.trial_id, float(result[REPORTED_AT]), time.time()))

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            record = self.trials.get(trial.trial_id)
            step = int(record.pending["step"]) if record is not None and record.pending else None
            started = time.perf_counter()
            super().on_checkpoint(iteration, trials, trial, checkpoint, **info)
            if step is not None:
                self.cost[(trial.trial_id, step)] += time.perf_counter() - started

    return TimedLedger(space, recorder)


def poll(uri: str, experiment_id: str, every_s: float, stop, out) -> None:
    """Reads every run's latest ``bench_reported_at`` from the server every ``every_s`` seconds, in a
    process of its own (parsing hundreds of runs would otherwise take the driver's GIL from Tune's loop);
    sends ``{run: [(when, value), ...]}`` once ``stop`` is set."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    seen: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    while not stop.wait(every_s):
        try:
            runs = client.search_runs([experiment_id], max_results=1000)
        except Exception:
            continue  # the poller's own request failed: the next poll sees the same records later
        now = time.time()
        for run in runs:
            value = run.data.metrics.get(REPORTED_AT)
            if value is not None:
                seen[run.info.run_id].append((now, value))
    out.send(dict(seen))


def lags(seen: dict, reported: list[tuple[str, float, float]]) -> tuple[list[float], list[float]]:
    """Per report: the first poll that saw its run at or past it, minus when the trial reported it, and
    minus when Tune handed it to the ledger (Tune's own delivery left out)."""
    from_report, from_ledger = [], []
    for run_id, at, received in reported:
        arrived = next((when for when, value in seen.get(run_id, []) if value >= at - 1e-3), None)
        if arrived is not None:
            from_report.append(arrived - at)
            from_ledger.append(max(0.0, arrived - received))
    return from_report, from_ledger


class LossCounter(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.retries = self.given_up = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.retries += "retrying" in text
        self.given_up += "given up" in text


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def make_tuner(ledger, trials: int, every_s: float, reports: int, storage: Path, name: str):
    """N trivial trials at once, each holding one unit of the ``bench_trial`` resource (no CPU)."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(trivial_trial, every_s=every_s, reports=reports), {"bench_trial": 1}
    )
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # Every report checkpoints, by design; Tune's warning about it says nothing to act on here.
    os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] = "0"
    tuner = tune.Tuner(
        trainable,
        param_space={"optim.lr_g": tune.loguniform(1e-4, 1e-2)},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=trials, reuse_actors=False),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            callbacks=[ledger],
            verbose=0,
        ),
    )
    return tuner


def records(uri: str, run_ids: list[str]) -> tuple[int, int, int]:
    """What the server holds once the sweep has ended: runs FINISHED, metric points, sample images."""
    from gan_ray.tracking.run import logged_sample_steps
    from gan_ray.tracking.store import make_client

    client = make_client(uri)
    finished = points = images = 0
    for run_id in run_ids:
        finished += client.get_run(run_id).info.status == "FINISHED"
        points += len(client.get_metric_history(run_id, REPORTED_AT))
        images += len(set(logged_sample_steps(client, run_id)))
    return finished, points, images


def run_once(uri: str, trials: int, every_s: float, reports: int, poll_s: float, root: Path) -> dict:
    from gan_ray.objective import Objective
    from gan_ray.search.load import parse_search_space
    from gan_ray.search.trials import SweepResult
    from gan_ray.tracking.sweep import MlflowSweep

    space = parse_search_space(SPACE.format(steps=reports * EVAL_EVERY, eval_every=EVAL_EVERY, trials=trials))
    study = f"bench_tracking-{trials}-{int(time.time())}"
    counter = LossCounter()
    logging.getLogger("gan_ray.tracking.writer").addHandler(counter)
    logging.getLogger("gan_ray.tracking.writer").setLevel(logging.INFO)
    recorder = MlflowSweep(uri, space, study, register=False, experiment=study)
    ledger = timed_ledger(space, recorder)
    context = multiprocessing.get_context("spawn")
    stop, (receive, send) = context.Event(), context.Pipe(duplex=False)
    poller = context.Process(target=poll, args=(uri, recorder.experiment_id, poll_s, stop, send), daemon=True)
    poller.start()
    tuner = make_tuner(ledger, trials, every_s, reports, root / "ray_results", study)
    started = time.monotonic()
    grid = tuner.fit()
    fit_s = time.monotonic() - started
    drain_started = time.monotonic()
    result = SweepResult(space.name, study, Objective("mode_distance", "min"))
    result.trials = ledger.summaries()
    recorder.finish(result, "FINISHED", None)
    drain_s = time.monotonic() - drain_started
    time.sleep(poll_s * 1.5)
    stop.set()
    seen = receive.recv()
    poller.join()

    finished, points, images = records(uri, [r.run_id for r in ledger.trials.values()])
    writer = getattr(recorder, "writer", None)  # None: the code before the writer (a baseline run)
    lost = sum(sum(c.values()) for c in writer.lost().values()) if writer else 0
    costs = [c * 1000 for c in ledger.cost.values()]
    lag, lag_ledger = lags(seen, [(ledger.trials[t].run_id, at, got) for t, at, got in ledger.reported])
    trial_errors = sum(1 for r in grid if r.error is not None)
    return {
        "trials": trials,
        "every_s": every_s,
        "reports_seen": len(ledger.reported),
        "reports_expected": trials * reports,
        "loop_ms_p50": _round(percentile(costs, 50)),
        "loop_ms_p99": _round(percentile(costs, 99)),
        "loop_ms_max": _round(max(costs) if costs else None),
        "lag_s_p50": _round(percentile(lag, 50)),
        "lag_s_p99": _round(percentile(lag, 99)),
        "lag_s_max": _round(max(lag) if lag else None),
        "lag_after_ledger_s_p50": _round(percentile(lag_ledger, 50)),
        "lag_after_ledger_s_p99": _round(percentile(lag_ledger, 99)),
        "lag_measured": len(lag),
        "trial_errors": trial_errors,
        "tracking_retries": counter.retries,
        "records_lost": lost,
        "runs_finished": f"{finished}/{trials}",
        "metric_points": f"{points}/{trials * reports}",
        "sample_images": f"{images}/{trials * reports}",
        "fit_s": round(fit_s, 1),
        "drain_s": round(drain_s, 1),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--backend-uri", help="an existing store for the server (a SQLAlchemy URI); default: a fresh one"
    )
    parser.add_argument("--trials", type=int, nargs="+", default=[8])
    parser.add_argument("--every", type=float, default=5.0, help="seconds between a trial's reports")
    parser.add_argument("--reports", type=int, default=12, help="reports per trial")
    parser.add_argument("--workers", type=int, default=4, help="mlflow server --workers")
    parser.add_argument("--pool-size", type=int, default=10, help="MLFLOW_SQLALCHEMYSTORE_POOL_SIZE")
    parser.add_argument("--max-overflow", type=int, default=20, help="MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between the lag poller's reads")
    parser.add_argument("--num-cpus", type=int, default=2, help="ray.init(num_cpus=...)")
    args = parser.parse_args(argv)

    import ray

    root = Path(tempfile.mkdtemp(prefix="gan_ray_tracking_load_"))
    postgres = Postgres() if args.backend == "postgres" and not args.backend_uri else None
    backend = args.backend_uri or (postgres.uri if postgres else f"sqlite:///{root / 'mlflow.db'}")
    server = MlflowServer(
        backend,
        root / "server",
        workers=args.workers,
        pool_size=args.pool_size,
        max_overflow=args.max_overflow,
    ).start()
    try:
        for n in args.trials:
            ray.init(
                num_cpus=args.num_cpus,
                resources={"bench_trial": n},
                include_dashboard=False,
                log_to_driver=False,
            )
            try:
                row = run_once(server.uri, n, args.every, args.reports, args.poll, root)
            finally:
                ray.shutdown()
            row.update(
                backend=args.backend,
                server_workers=args.workers,
                pool=f"{args.pool_size}+{args.max_overflow}",
            )
            print(json.dumps(row), flush=True)
    finally:
        server.kill()
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    main()
