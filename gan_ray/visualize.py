"""Pictures of a run: sample grids for images, scatter plots for 2-D data, loss curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.utils import save_image

from gan_ray.data.catalog import dataset_info
from gan_ray.data.mixtures import mixture

# Figures are built with matplotlib's object API, not pyplot: no global backend to switch, nothing
# that needs a display, and nothing shared between threads.


def save_samples(
    samples: Tensor, path: str | Path, dataset_name: str, max_images: int = 64, nrow: int | None = None
) -> Path:
    """A PNG of generated samples: an image grid (``nrow`` images a row; None: square), or a scatter over
    the mixture's modes for 2-D data."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = samples.detach().float().cpu()
    if dataset_info(dataset_name).is_mixture:
        _scatter(samples, path, dataset_name)
    else:
        images = samples[:max_images]
        nrow = nrow or int(math.ceil(math.sqrt(images.shape[0])))
        save_image(images, path, nrow=nrow, normalize=True, value_range=(-1, 1))
    return path


def class_rows(samples: Tensor, num_classes: int, per_class: int = 8) -> tuple[Tensor, int]:
    """Samples drawn for the classes in turn (sample i of class i mod C, as the eval labels are) reordered
    into a grid with one row a class: (the reordered samples, images a row)."""
    per_class = max(1, min(per_class, samples.shape[0] // num_classes))
    index = torch.arange(per_class)[None, :] * num_classes + torch.arange(num_classes)[:, None]
    return samples[index.flatten().to(samples.device)], per_class


def _scatter(samples: Tensor, path: Path, dataset_name: str) -> None:
    modes = mixture(dataset_name).modes
    span = float(modes.abs().max()) * 1.5
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    finite = samples[torch.isfinite(samples).all(dim=1)]
    ax.scatter(finite[:, 0], finite[:, 1], s=2, alpha=0.4, label="generated")
    ax.scatter(modes[:, 0], modes[:, 1], s=30, c="red", marker="x", label="modes")
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_loss_curves(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """loss_d and loss_g against the step, from the eval reports."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = [h["step"] for h in history]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for key in ("loss_d", "loss_g"):
        ax.plot(steps, [h[key] for h in history], marker=".", label=key)
    ax.set_xlabel("step (G-steps)")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
