"""Sampling from a trained generator loaded from the MLflow registry, a run, or a local folder.

Loading runs no pickled code: the weights are read with ``weights_only=True`` and the module is
rebuilt from the saved config by gan_ray's own code (a logged pt2 program is the fallback).
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from gan_ray.config import GanConfig, read_yaml, validate_config
from gan_ray.noise import get_noise
from gan_ray.tracking.model import CONFIG_FILE, EXTRA_FILES_DIR, PROGRAM_DIR, STATE_FILE, download_model
from gan_ray.tracking.store import check_tracking_server, resolve_tracking_uri
from gan_ray.training.checkpoint import CHECKPOINT_FILE, generator_weights, load_checkpoint
from gan_ray.training.loop import resolve_device
from gan_ray.training.networks import generator_from_state
from gan_ray.visualize import save_samples

# Where a logged model keeps its exported program: today's, and that of models logged before the pyfunc.
PT2_FILES = (f"{PROGRAM_DIR}/data/model.pt2", "data/model.pt2")
CHUNK = 4096  # samples per forward pass


@dataclass
class LoadedGenerator:
    """A trained generator ready to sample: ``sample(n, seed)`` gives data-space samples."""

    module: Callable[[Tensor], Tensor]
    config: GanConfig
    device: torch.device
    source: str
    _noise: Callable[..., Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._noise = get_noise(self.config.noise.distribution)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """``n`` samples on ``device``: images (n, C, H, W) in [-1, 1], or points (n, 2).

        The noise comes from the config's distribution, drawn on the CPU from a ``torch.Generator``
        seeded with ``seed`` (fresh entropy when None): the same seed gives the same samples on any
        device, and the global RNG is left alone.
        """
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        rng = torch.Generator()
        if seed is None:
            rng.seed()
        else:
            rng.manual_seed(seed)
        z = self._noise(n, self.config.noise_dim, generator=rng)
        out = []
        for chunk in z.split(CHUNK):
            chunk = chunk.to(self.device)
            if chunk.shape[0] == 1:  # an exported program's batch dimension is dynamic from 2 up
                out.append(self.module(chunk.expand(2, -1))[:1].float())
            else:
                out.append(self.module(chunk).float())
        return torch.cat(out)

    def save(self, samples: Tensor, path: str | Path) -> Path:
        """A PNG of ``samples``: an image grid, or a scatter plot over the mixture's modes."""
        return save_samples(samples, path, self.config.data.name, max_images=samples.shape[0])


def load_generator(uri: str | Path, tracking_uri: str | None = None, device: str = "cpu") -> LoadedGenerator:
    """Load a generator from ``models:/NAME@champion``, ``models:/NAME/3``, ``models:/<model id>``,
    ``runs:/<run id>/generator``, a logged model folder, a training output folder or a checkpoint file.

    ``tracking_uri`` is used for models:/ and runs:/ URIs (default: :func:`gan_ray.tracking.store.resolve_tracking_uri`).
    """
    target = resolve_device(device)
    local = Path(uri)
    if local.exists():
        return _load_local(local, target, str(uri))
    text = str(uri)
    if "://" not in text and not text.startswith(("models:", "runs:")):
        raise FileNotFoundError(
            f"no generator at {text!r}: not a local path, and not a models:/ or runs:/ URI"
        )
    tracking_uri = resolve_tracking_uri(tracking_uri)
    check_tracking_server(tracking_uri, must_exist=True)
    with tempfile.TemporaryDirectory(prefix="gan_ray_model_") as tmp:
        return _load_local(download_model(text, tmp, tracking_uri), target, text)


def _load_local(path: Path, device: torch.device, source: str) -> LoadedGenerator:
    if path.is_file():
        return _from_checkpoint(path, device, source)
    for folder in (path / EXTRA_FILES_DIR, path):
        if (folder / STATE_FILE).is_file() and (folder / CONFIG_FILE).is_file():
            cfg = _read_config(folder / CONFIG_FILE)
            state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            return _rebuild(cfg, state, device, source)
    if (path / CHECKPOINT_FILE).is_file():
        return _from_checkpoint(path / CHECKPOINT_FILE, device, source)
    has_program = any((path / f).is_file() for f in PT2_FILES)
    if has_program and (path / EXTRA_FILES_DIR / CONFIG_FILE).is_file():
        return _from_pt2(path, device, source)
    raise FileNotFoundError(
        f"no generator in {path}: expected an MLflow model logged by gan_ray ({EXTRA_FILES_DIR}/{STATE_FILE} + "
        f"{CONFIG_FILE}), or a training output folder / file with {CHECKPOINT_FILE}"
    )


def _read_config(path: Path) -> GanConfig:
    return validate_config(read_yaml(path.read_text()), source=f" in {path}")


def _from_checkpoint(path: Path, device: torch.device, source: str) -> LoadedGenerator:
    try:
        state = load_checkpoint(path)  # weights_only=True
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise FileNotFoundError(
            f"no generator in {source}: {path.name} is not a gan_ray checkpoint ({err})"
        ) from None
    if not isinstance(state, dict) or "generator" not in state:
        raise FileNotFoundError(f"no generator in {source}: {path.name} holds no generator weights")
    if "config" in state:
        cfg = validate_config(state["config"], source=f" in {path}")
    elif (path.parent / CONFIG_FILE).is_file():
        cfg = _read_config(path.parent / CONFIG_FILE)
    else:
        raise FileNotFoundError(f"checkpoint {path} holds no config and there is no {CONFIG_FILE} beside it")
    return _rebuild(cfg, generator_weights(state), device, source)


def _rebuild(cfg: GanConfig, state: dict[str, Tensor], device: torch.device, source: str) -> LoadedGenerator:
    return LoadedGenerator(generator_from_state(cfg, state).to(device), cfg, device, source)


def _from_pt2(path: Path, device: torch.device, source: str) -> LoadedGenerator:
    """The exported program, through MLflow's loader (which refuses archives that are not pickle-free)."""
    import mlflow.pytorch

    if device.type != "cpu":
        raise ValueError(f"the pt2 program in {path} was exported on the CPU and cannot move to {device}")
    cfg = _read_config(path / EXTRA_FILES_DIR / CONFIG_FILE)
    return LoadedGenerator(mlflow.pytorch.load_model(str(path)), cfg, device, source)
