"""Sampling from a trained generator loaded from the MLflow registry, a run, or a local folder, with
truncation (z x psi, normal noise only), latent interpolation grids, and classes for a conditional one.

Loading runs no pickled code: the weights are read with ``weights_only=True`` and the module is
rebuilt from the saved config by gan_ray's own code (a logged pt2 program is the fallback).
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from gan_ray.config import GanConfig, read_yaml, validate_config
from gan_ray.errors import ConfigError
from gan_ray.models.conditional import pack_labels
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
#: How an interpolation grid walks between two noise vectors.
PATHS = ("slerp", "lerp")


def slerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between rows of ``z0`` and ``z1`` (N, D) at fractions ``t`` (T,):
    (N, T, D). Where the two are (nearly) parallel, linear interpolation (the same path, and stable)."""
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)[:, None, None]
    t = t[None, :, None]
    a, b = z0[:, None, :], z1[:, None, :]
    linear = (1 - t) * a + t * b
    sin = torch.sin(omega)
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / sin.clamp_min(1e-6)
    return torch.where(sin > 1e-4, spherical, linear)


def lerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation between rows of ``z0`` and ``z1`` (N, D) at fractions ``t`` (T,): (N, T, D)."""
    t = t[None, :, None]
    return (1 - t) * z0[:, None, :] + t * z1[:, None, :]


@dataclass
class LoadedGenerator:
    """A trained generator ready to sample: ``sample(n, seed)`` gives data-space samples;
    ``sample(n, labels=...)`` those of the asked classes for a class-conditional one."""

    module: Callable[..., Tensor]
    config: GanConfig
    device: torch.device
    source: str
    _noise: Callable[..., Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._noise = get_noise(self.config.noise.distribution)

    def check_truncation(self, truncation: float | None) -> None:
        """Refuse, in one line, a truncation this generator's noise has no meaning for."""
        if truncation is None:
            return
        if not truncation >= 0:
            raise ConfigError(f"truncation psi must be >= 0, got {truncation!r}")
        noise = self.config.noise.distribution
        if noise != "normal":
            raise ConfigError(
                f"truncation scales normal noise towards its mean (z x psi); this generator was trained on "
                f"noise.distribution {noise!r}, which it does not apply to"
            )

    @property
    def num_classes(self) -> int:
        """The classes it was trained on (0: unconditional)."""
        return self.config.num_classes

    def check_labels(self, labels: Sequence[int] | Tensor | None, n: int) -> Tensor | None:
        """``labels`` as int64 (n,), refused in one line where they do not fit; None for an unconditional
        generator. A conditional one without labels draws the classes in turn (0, 1, ..., C-1, 0, ...)."""
        classes = self.num_classes
        if not classes:
            if labels is not None:
                raise ConfigError(
                    "labels were given, but this generator is unconditional (model.conditional false)"
                )
            return None
        if labels is None:
            return torch.arange(n) % classes
        try:
            y = torch.as_tensor(labels).flatten()
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"labels must be class indices (ints); got {labels!r} ({err})") from None
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ConfigError(f"labels must be class indices (ints); got dtype {y.dtype}")
        if y.numel() != n:
            raise ConfigError(f"{y.numel()} labels for {n} samples; give one label a sample")
        bad = y[(y < 0) | (y >= classes)]
        if bad.numel():
            raise ConfigError(
                f"class {int(bad[0])} is out of range: this generator has {classes} classes (0 to {classes - 1})"
            )
        return y.long()

    def _noise_vectors(self, n: int, seed: int | None) -> Tensor:
        rng = torch.Generator()
        if seed is None:
            rng.seed()
        else:
            rng.manual_seed(seed)
        return self._noise(n, self.config.noise_dim, generator=rng)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        seed: int | None = None,
        truncation: float | None = None,
        labels: Sequence[int] | Tensor | None = None,
    ) -> Tensor:
        """``n`` samples on ``device``: images (n, C, H, W) in [-1, 1], or points (n, 2).

        ``labels`` (n ints in [0, num_classes)): the class of each sample, for a class-conditional
        generator (default: the classes in turn); an unconditional one refuses them.

        The noise comes from the config's distribution, drawn on the CPU from a ``torch.Generator``
        seeded with ``seed`` (fresh entropy when None): the same seed gives the same samples on any
        device, and the global RNG is left alone. ``truncation`` psi (normal noise only) draws z x psi:
        psi < 1 trades variety for typical samples (psi 0: G's image of the mean noise).
        """
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        self.check_truncation(truncation)
        y = self.check_labels(labels, n)
        z = self._noise_vectors(n, seed)
        return self.generate(z * truncation if truncation is not None else z, y)

    @torch.no_grad()
    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """G's samples of the noise vectors ``z`` (n, noise_dim) (of ``labels`` (n,) for a conditional
        G: see :meth:`check_labels`), in chunks, as float on ``device``."""
        labels = self.check_labels(labels, z.shape[0])
        out = []
        for i, chunk in enumerate(z.split(CHUNK)):
            args = [chunk.to(self.device)]
            if labels is not None:
                args.append(labels[i * CHUNK : i * CHUNK + chunk.shape[0]].to(self.device))
            if chunk.shape[0] == 1:  # an exported program's batch dimension is dynamic from 2 up
                out.append(self.module(*(a.expand(2, *a.shape[1:]) for a in args))[:1].float())
            else:
                out.append(self.module(*args).float())
        return torch.cat(out)

    @torch.no_grad()
    def interpolate(
        self,
        rows: int,
        steps: int = 8,
        seed: int | None = None,
        path: str = "slerp",
        truncation: float | None = None,
        label: int | None = None,
    ) -> Tensor:
        """``rows`` paths of ``steps`` samples each, from one noise vector to another (rows x steps
        samples, row by row): linear (``lerp``) or spherical (``slerp``, which keeps Gaussian noise at its
        typical norm) interpolation. Images only. A conditional generator draws every path in class
        ``label``, or row r in class r mod C."""
        if self.config.data.is_mixture:
            raise ConfigError(
                f"interpolation grids are for images; {self.config.data.name!r} is a 2-D mixture"
            )
        if rows < 1 or steps < 2:
            raise ConfigError(f"an interpolation grid needs rows >= 1 and steps >= 2, got {rows} and {steps}")
        if path not in PATHS:
            raise ConfigError(f"interpolation path {path!r}; expected one of {list(PATHS)}")
        self.check_truncation(truncation)
        row_labels = None if label is None else [label] * rows
        y = self.check_labels(row_labels, rows)
        ends = self._noise_vectors(2 * rows, seed)
        t = torch.linspace(0.0, 1.0, steps)
        z = (slerp if path == "slerp" else lerp)(ends[:rows], ends[rows:], t).reshape(rows * steps, -1)
        y = None if y is None else y.repeat_interleave(steps)
        return self.generate(z * truncation if truncation is not None else z, y)

    def save(self, samples: Tensor, path: str | Path, per_row: int | None = None) -> Path:
        """A PNG of ``samples``: an image grid (``per_row`` images a row; None: square), or a scatter plot
        over the mixture's modes."""
        return save_samples(samples, path, self.config.data.name, max_images=samples.shape[0], nrow=per_row)


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
    program = mlflow.pytorch.load_model(str(path))
    if cfg.num_classes:  # the program takes cat(z, label) (gan_ray.models.conditional.PackedConditional)
        return LoadedGenerator(lambda z, y: program(pack_labels(z, y)), cfg, device, source)
    return LoadedGenerator(program, cfg, device, source)
