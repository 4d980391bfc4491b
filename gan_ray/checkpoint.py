"""Saving and restoring a run's full training state: G, D, both optimisers, the step and the RNG."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from gan_ray.step import unwrap

CHECKPOINT_FILE = "checkpoint.pt"


def training_state(
    step: int, generator, discriminator, opt_g, opt_d, config: dict[str, Any]
) -> dict[str, Any]:
    state = {
        "step": step,
        "generator": unwrap(generator).state_dict(),
        "discriminator": unwrap(discriminator).state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "config": config,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng_cuda"] = torch.cuda.get_rng_state()
    return state


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically (a crash never leaves half a file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_FILE
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, target)
    return target


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (a directory or the file itself).

    ``weights_only=True``: a checkpoint is tensors and plain data, so loading one runs no code.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def restore(state: dict[str, Any], generator, discriminator, opt_g, opt_d) -> int:
    """Load ``state`` into the modules and optimisers and the RNG; returns the step to continue from."""
    unwrap(generator).load_state_dict(state["generator"])
    unwrap(discriminator).load_state_dict(state["discriminator"])
    opt_g.load_state_dict(state["opt_g"])
    opt_d.load_state_dict(state["opt_d"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng_cuda"])
    return int(state["step"])
