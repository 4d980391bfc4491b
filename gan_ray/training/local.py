"""Single-process training: the run driver with a :class:`LocalSession`, which keeps the output folder.

The output folder ``output_dir/name`` is a run-state folder (see :mod:`gan_ray.training.checkpoint`)
kept at the latest eval, plus ``history.jsonl`` and one ``samples/step_*.png`` per eval.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from gan_ray.config import GanConfig, load_config
from gan_ray.data.catalog import FID_METRICS
from gan_ray.training.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DIVERGED_FILE,
    HISTORY_FILE,
    SAMPLES_DIR,
    SAMPLES_FILE,
)
from gan_ray.training.driver import (
    FolderCheckpoint,
    FolderWriter,
    check_resume,
    fresh_start_line,
    loop_config,
    run_worker,
)
from gan_ray.training.loop import Training, resolve_device
from gan_ray.training.observers import EvalRecord, RunObserver
from gan_ray.training.result import RunResult, result_of, run_outcome

#: What a run writes into its output folder: all of it goes when a run of the name starts afresh.
OUTPUT_ENTRIES = (CHECKPOINT_FILE, SAMPLES_FILE, CONFIG_FILE, HISTORY_FILE, DIVERGED_FILE, SAMPLES_DIR)


def format_report(metrics: dict[str, Any], total: int) -> str:
    """One console line per eval."""
    m = metrics
    parts = [f"step {m['step']}/{total}", f"loss_d {m['loss_d']:.4f}", f"loss_g {m['loss_g']:.4f}"]
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
    if "class_accuracy" in m:  # a conditional G: the class asked for, as the classifier judges it
        parts.append(f"class acc {m['class_accuracy']:.3f} intra_fid {m.get('intra_fid', float('nan')):.3f}")
    if "ada_p" in m:
        parts.append(f"ada_p {m['ada_p']:.3f}")
    parts.append(f"{m['images_per_s']:.0f} img/s")
    return " | ".join(parts)


class LocalSession:
    """This process as the run's one worker: reports go to the output folder and to the observers."""

    rank, world_size = 0, 1

    def __init__(
        self, cfg: GanConfig, out: Path, observers: Sequence[RunObserver] = (), verbose: bool = True
    ):
        self.cfg, self.out, self.observers, self.verbose = cfg, out, observers, verbose
        self.name = cfg.name

    def device(self) -> torch.device:
        return resolve_device(self.cfg.train.device)

    def node_id(self) -> str:
        return platform.node()

    def wrap_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def local_file(self, uri: str | None) -> AbstractContextManager[str | None]:
        return nullcontext(uri)

    def checkpoint(self) -> FolderCheckpoint | None:
        """The output folder's checkpoint: there only when the run resumes (a fresh one cleared it)."""
        return FolderCheckpoint(self.out) if (self.out / CHECKPOINT_FILE).is_file() else None

    def started(self, training: Training) -> None:
        pass

    def should_stop(self) -> bool:
        return False  # a local run ends at its last step, or at Ctrl-C

    def report(self, metrics: dict[str, Any], write: FolderWriter | None, dir_name: str) -> None:
        if write is None:
            return
        write(self.out)  # the checkpoint is written atomically: a crash never leaves half of one
        if metrics.get("diverged"):
            return  # a divergence record beside the last checkpoint; no eval to tell of
        step = int(metrics["step"])
        with (self.out / HISTORY_FILE).open("a") as log:
            log.write(json.dumps(metrics) + "\n")
        shutil.copyfile(self.out / SAMPLES_FILE, self.out / SAMPLES_DIR / f"step_{step:07d}.png")
        if self.verbose:
            print(format_report(metrics, self.cfg.train.steps), file=sys.stderr, flush=True)
        for obs in self.observers:
            obs.on_eval(EvalRecord(step, metrics, self.out))


def start_afresh(out: Path, name: str) -> None:
    """Remove what an earlier run of ``name`` wrote into ``out`` (only that: the folder may hold more),
    with a line saying so where there was a checkpoint."""
    had_checkpoint = (out / CHECKPOINT_FILE).is_file() or (out / DIVERGED_FILE).is_file()
    for entry in OUTPUT_ENTRIES:
        path = out / entry
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if had_checkpoint:
        print(fresh_start_line(name, str(out)), file=sys.stderr, flush=True)


def run_local(
    config: GanConfig | str | Path,
    *,
    resume: bool = False,
    observers: Sequence[RunObserver] = (),
    verbose: bool = True,
) -> RunResult:
    """Train ``config`` in this process, writing its output folder. The resume rule of every run:
    ``resume`` continues from the checkpoint found there (and its history with it); without it the run
    starts afresh, removing an earlier run's output there with a line saying so.

    ``verbose`` prints a line per eval; the run driver prints a warning line whatever it says, at the
    eval where the run's health turns bad and at the end of a run that ends ``collapsed``."""
    cfg = config if isinstance(config, GanConfig) else load_config(config)
    out = Path(cfg.output_dir) / cfg.name
    if resume:
        has_state = (out / CHECKPOINT_FILE).is_file() or (out / DIVERGED_FILE).is_file()
        check_resume(cfg, out if has_state else None, cfg.name)
    else:
        start_afresh(out, cfg.name)
    (out / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    for obs in observers:
        obs.start(cfg)
    result: RunResult | None = None
    error: BaseException | None = None
    try:
        # Inside the try: observers (an MLflow run already started) must hear of a failure here too.
        run_worker(loop_config(cfg, cfg.objective), LocalSession(cfg, out, observers, verbose))
    except BaseException as err:
        error = err
        raise
    finally:
        result = local_result(cfg, out)  # what the folder holds, also after a failure
        folder = out if result.checkpoint is not None else None
        for obs in observers:
            obs.end(run_outcome(result, error, folder))
    if verbose:
        print(f"done: {result.status}, output {result.output}", file=sys.stderr, flush=True)
    return result


def local_result(cfg: GanConfig, out: Path) -> RunResult:
    """The result a local run's output folder holds."""
    kept = (out / CHECKPOINT_FILE).is_file() or (out / DIVERGED_FILE).is_file()
    return result_of(cfg, str(out), out if kept else None, str(out))
