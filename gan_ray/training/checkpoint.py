"""A run's state on disk, in one folder format for local runs, Ray Train checkpoints and MLflow.

A *run-state folder* holds:

- ``checkpoint.pt``: G, D, both optimisers, the step, the RNG, the config, the eval history so far and
  the hyperparameters as the live objects held them (written atomically);
- ``samples.png``: the samples of the eval it was written at;
- ``config.yaml``: the config, for people.

A local run's output folder is one, plus ``history.jsonl`` and ``samples/step_*.png`` (one per eval).

A run that diverged ends with a *divergence record* instead: a folder holding only ``diverged.json``
(the step, the non-finite metrics, the history up to then), so that whoever reads the run's latest
checkpoint learns that it diverged, and nothing resumes a NaN model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gan_ray.augment import Augmentation
from gan_ray.config import GanConfig, config_yaml
from gan_ray.files import atomic_torch_save
from gan_ray.models import unwrap
from gan_ray.training.ema import WeightAverage
from gan_ray.visualize import class_rows, save_samples

CHECKPOINT_FILE = "checkpoint.pt"
SAMPLES_FILE = "samples.png"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.jsonl"
SAMPLES_DIR = "samples"
DIVERGED_FILE = "diverged.json"


def training_state(
    step: int,
    generator,
    discriminator,
    opt_g,
    opt_d,
    config: GanConfig,
    history: Sequence[Mapping[str, float]] = (),
    hyperparameters: Mapping[str, Any] | None = None,
    ema: WeightAverage | None = None,
    augment: Augmentation | None = None,
) -> dict[str, Any]:
    """Everything a run needs to continue bit for bit, plus what it has reported so far; with EMA on,
    ``generator_ema`` is the averaged generator (what evals scored and what a logged model holds); with
    ADA on, ``augment`` holds its probability and the statistics it moves by."""
    state = {
        "step": step,
        "generator": unwrap(generator).state_dict(),
        "discriminator": unwrap(discriminator).state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "config": config.model_dump(mode="json"),
        "history": [dict(h) for h in history],
        "hyperparameters": dict(hyperparameters or {}),
    }
    if ema is not None:
        average = ema.state_dict()
        state["generator_ema"], state["ema_updates"] = average["module"], average["updates"]
    if augment is not None and augment.state_dict():
        state["augment"] = augment.state_dict()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng_cuda"] = torch.cuda.get_rng_state()
    return state


def generator_weights(state: Mapping[str, Any]) -> dict[str, Any]:
    """The weights a checkpoint's generator is used with: the EMA's where the run kept one."""
    return state.get("generator_ema") or state["generator"]


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``folder/checkpoint.pt`` atomically (a crash never leaves half a file)."""
    return atomic_torch_save(state, Path(folder) / CHECKPOINT_FILE)


def write_run_state(folder: str | Path, state: dict[str, Any], samples: Tensor, config: GanConfig) -> Path:
    """Make ``folder`` a run-state folder: the checkpoint, the eval's samples and the config. A conditional
    run's samples are drawn for the classes in turn: its grid has one row a class."""
    folder = Path(folder)
    save_checkpoint(folder, state)
    if config.num_classes and samples.shape[0] >= config.num_classes:
        grid, per_row = class_rows(samples, config.num_classes)
        save_samples(grid, folder / SAMPLES_FILE, config.data.name, max_images=grid.shape[0], nrow=per_row)
    else:
        save_samples(samples, folder / SAMPLES_FILE, config.data.name)
    (folder / CONFIG_FILE).write_text(config_yaml(config))
    return folder


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (a run-state folder or the file itself).

    ``weights_only=True``: a checkpoint is tensors and plain data, so loading one runs no code.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def restore(
    state: dict[str, Any],
    generator,
    discriminator,
    opt_g,
    opt_d,
    ema: WeightAverage | None = None,
    augment: Augmentation | None = None,
) -> int:
    """Load ``state`` into the modules, optimisers, EMA, ADA's probability and RNG; returns the step to
    continue from.

    An EMA the checkpoint has no average for (turned on at this resume) starts from G's weights.
    """
    unwrap(generator).load_state_dict(state["generator"])
    unwrap(discriminator).load_state_dict(state["discriminator"])
    opt_g.load_state_dict(state["opt_g"])
    opt_d.load_state_dict(state["opt_d"])
    if ema is not None:
        if "generator_ema" in state:
            ema.load_state_dict({"module": state["generator_ema"], "updates": state["ema_updates"]})
        else:
            ema.restart()
    if augment is not None and "augment" in state:
        augment.load_state_dict(state["augment"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng_cuda"])
    return int(state["step"])


def write_divergence(
    folder: str | Path, step: int, metrics: Mapping[str, float], history: Sequence[Mapping]
) -> Path:
    """Make ``folder`` the divergence record of a run that diverged at ``step``."""
    path = Path(folder) / DIVERGED_FILE
    record = {"step": step, "metrics": dict(metrics), "history": [dict(h) for h in history]}
    path.write_text(json.dumps(record))  # NaN and Infinity as JSON's own extension, which json reads back
    return path


def read_divergence(folder: str | Path) -> dict[str, Any] | None:
    """The divergence record in ``folder``, or None when it is an ordinary run-state folder."""
    path = Path(folder) / DIVERGED_FILE
    return json.loads(path.read_text()) if path.is_file() else None
