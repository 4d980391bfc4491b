"""Single-process training: the core loop plus what a user wants on disk, reported to observers.

The output folder ``output_dir/name`` is a run-state folder (see :mod:`gan_ray.training.checkpoint`)
kept at the latest eval, plus ``history.jsonl`` and one ``samples/step_*.png`` per eval.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gan_ray.config import GanConfig, load_config
from gan_ray.data.catalog import FID_METRICS
from gan_ray.training.checkpoint import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    SAMPLES_DIR,
    SAMPLES_FILE,
    load_checkpoint,
    write_run_state,
)
from gan_ray.training.health import health_warning, turned_bad
from gan_ray.training.loop import EvalReport, build_training, default_evaluator, run_loop
from gan_ray.training.observers import (
    EvalRecord,
    RunObserver,
    RunStatus,
    final_status,
    last_health,
    outcome_of,
)


@dataclass
class TrainResult:
    config: GanConfig
    output_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}

    @property
    def status(self) -> RunStatus:
        """``completed``, or ``collapsed`` when the last eval's health was not ok (a run that raised
        returns no result)."""
        return final_status("completed", self.history)

    @property
    def checkpoint(self) -> Path | None:
        path = self.output_dir / CHECKPOINT_FILE
        return path if path.is_file() else None

    @property
    def samples(self) -> Path | None:
        path = self.output_dir / SAMPLES_FILE
        return path if path.is_file() else None


def format_report(report: EvalReport, total: int) -> str:
    """One console line per eval."""
    m = report.metrics
    parts = [f"step {report.step}/{total}", f"loss_d {m['loss_d']:.4f}", f"loss_g {m['loss_g']:.4f}"]
    parts.append(f"D(x) {m['d_real']:.3f} D(G(z)) {m['d_fake']:.3f}")
    if "modes_covered" in m:
        parts.append(
            f"modes {m['modes_covered']:.0f} hq {m['high_quality_fraction']:.3f} kl {m['reverse_kl']:.3f}"
        )
    for name in FID_METRICS.values():
        if name in m:
            parts.append(f"{name} {m[name]:.3f}")
    if "classes_covered" in m:
        parts.append(f"classes {m['classes_covered']:.0f} kl {m['class_reverse_kl']:.3f}")
    parts.append(f"{m['images_per_s']:.0f} img/s")
    return " | ".join(parts)


def run_local(
    config: GanConfig | str | Path,
    *,
    resume: bool = False,
    observers: Sequence[RunObserver] = (),
    verbose: bool = True,
) -> TrainResult:
    """Train ``config`` in this process, writing its output folder; with ``resume`` a run continues
    from the checkpoint found there (and its history with it).

    ``verbose`` prints a line per eval; a warning line is printed whatever it says, at the eval where
    the run's health turns bad and at the end of a run that ends ``collapsed``."""
    cfg = config if isinstance(config, GanConfig) else load_config(config)
    out = Path(cfg.output_dir) / cfg.name
    (out / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    result = TrainResult(cfg, out)
    for obs in observers:
        obs.start(cfg)
    error: BaseException | None = None
    try:
        # Inside the try: observers (an MLflow run already started) must hear of a failure here too.
        training = build_training(cfg)
        evaluator = default_evaluator(cfg, training.device)
        if resume and (out / CHECKPOINT_FILE).is_file():
            training.load_state_dict(load_checkpoint(out, map_location=training.device))
        result.history = training.history
        with (out / HISTORY_FILE).open("a" if resume else "w") as log:
            for report in run_loop(training, evaluator):
                log.write(json.dumps(report.metrics) + "\n")
                log.flush()
                write_run_state(out, training.state_dict(), report.samples_of(training), cfg)
                shutil.copyfile(out / SAMPLES_FILE, out / SAMPLES_DIR / f"step_{report.step:07d}.png")
                if verbose:
                    print(format_report(report, cfg.train.steps), file=sys.stderr, flush=True)
                _warn_if_turned_bad(cfg.name, report, result.history)
                for obs in observers:
                    obs.on_eval(EvalRecord(report.step, report.metrics, out))
    except BaseException as err:
        error = err
        raise
    finally:
        outcome = outcome_of(error, result.history, out if result.checkpoint else None)
        for obs in observers:
            obs.end(outcome)
    if verbose:
        print(f"done: checkpoint {result.checkpoint}, samples {result.samples}", file=sys.stderr, flush=True)
    if result.status == "collapsed":
        last = result.final
        print(health_warning(cfg.name, int(last["step"]), last, ended=True), file=sys.stderr, flush=True)
    return result


def _warn_if_turned_bad(name: str, report: EvalReport, history: list) -> None:
    """Print a warning line if the run's health turned bad at this eval. run_loop has appended the
    report to ``history`` already: the eval before it is ``history[-2]``."""
    if turned_bad(last_health(history[:-1]), report.metrics):
        print(health_warning(name, report.step, report.metrics, ended=False), file=sys.stderr, flush=True)
