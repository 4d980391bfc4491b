"""Single-process training: the core loop plus what a user wants on disk (checkpoint, samples, history).

Observers (e.g. MLflow tracking) see every eval report and the end of the run; they do not change it.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gan_ray.checkpoint import load_checkpoint, save_checkpoint
from gan_ray.config import GanConfig, config_yaml, load_config
from gan_ray.loop import EvalReport, Training, build_training, default_evaluator, run_loop
from gan_ray.visualize import save_samples


@dataclass
class TrainResult:
    config: GanConfig
    output_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    samples: Path | None = None

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


class RunObserver(Protocol):
    def on_eval(self, report: EvalReport, training: Training, artifacts: dict[str, Path]) -> None: ...

    def on_end(self, result: TrainResult, error: BaseException | None) -> None: ...


def format_report(report: EvalReport, total: int) -> str:
    m = report.metrics
    parts = [f"step {report.step}/{total}", f"loss_d {m['loss_d']:.4f}", f"loss_g {m['loss_g']:.4f}"]
    parts.append(f"D(x) {m['d_real']:.3f} D(G(z)) {m['d_fake']:.3f}")
    if "modes_covered" in m:
        parts.append(
            f"modes {m['modes_covered']:.0f} hq {m['high_quality_fraction']:.3f} kl {m['reverse_kl']:.3f}"
        )
    if "fid" in m:
        parts.append(f"fid {m['fid']:.3f}")
    parts.append(f"{m['images_per_s']:.0f} img/s")
    return " | ".join(parts)


def train(
    config: GanConfig | str | Path,
    *,
    resume: bool = False,
    observers: Sequence[RunObserver] = (),
    verbose: bool = True,
) -> TrainResult:
    """Train ``config`` in this process; writes ``checkpoint.pt``, sample images and ``history.jsonl``
    to ``output_dir/name``. With ``resume`` a run continues from the checkpoint found there."""
    cfg = config if isinstance(config, GanConfig) else load_config(config)
    out = Path(cfg.output_dir) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    result = TrainResult(cfg, out)
    (out / "config.yaml").write_text(config_yaml(cfg))
    error: BaseException | None = None
    history_file = None
    try:
        # Inside the try: observers (an MLflow run already started) must hear of a failure here too.
        training = build_training(cfg)
        evaluator = default_evaluator(cfg, training.device)
        if resume and (out / "checkpoint.pt").is_file():
            training.load_state_dict(load_checkpoint(out, map_location=training.device))
        history_file = (out / "history.jsonl").open("a" if resume else "w")
        for report in run_loop(training, evaluator):
            result.history.append(report.metrics)
            history_file.write(json.dumps(report.metrics) + "\n")
            history_file.flush()
            result.checkpoint = save_checkpoint(out, training.state_dict())
            step_image = save_samples(
                report.samples_of(training), out / "samples" / f"step_{report.step:07d}.png", cfg.data.name
            )
            result.samples = Path(shutil.copyfile(step_image, out / "samples.png"))
            if verbose:
                print(format_report(report, cfg.train.steps), file=sys.stderr, flush=True)
            for obs in observers:
                obs.on_eval(report, training, {"samples": step_image, "checkpoint": result.checkpoint})
    except BaseException as err:
        error = err
        raise
    finally:
        if history_file is not None:
            history_file.close()
        for obs in observers:
            obs.on_end(result, error)
    if verbose:
        print(f"done: checkpoint {result.checkpoint}, samples {result.samples}", file=sys.stderr, flush=True)
    return result
