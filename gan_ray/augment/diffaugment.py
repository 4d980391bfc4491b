"""DiffAugment (Zhao et al. 2020): colour, translation and cutout as differentiable tensor operations, so
D sees reals and fakes augmented alike and G's gradients flow back through the augmentation.

After ``mit-han-lab/data-efficient-gans`` ``DiffAugment_pytorch.py``, with one addition for ADA: each
transform is applied to each sample with probability ``p`` (a device tensor, so an adaptive p needs no
host sync); ``p=None`` applies every transform to every sample, as DiffAugment does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: The transforms in the order they are applied.
TRANSFORMS = ("color", "translation", "cutout")


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One U[low, high) number per sample, shaped to broadcast over an image."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low


def color(x: Tensor) -> Tensor:
    """Brightness + U[-0.5, 0.5), saturation x U[0, 2), contrast x U[0.5, 1.5), each per sample."""
    x = x + _uniform(x, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by whole pixels, up to ``ratio`` of its side each way, filling with zeros."""
    n, _, h, w = x.shape
    shift_h, shift_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-shift_h, shift_h + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-shift_w, shift_w + 1, (n, 1, 1), device=x.device)
    batch, rows, cols = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )
    # Index into a 1-pixel zero border: a pixel shifted in from outside reads the border.
    rows = (rows + dy + 1).clamp(0, h + 1)
    cols = (cols + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a square of ``ratio`` of the side at a random centre of each image (clipped at the edges)."""
    n, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - size_h % 2), (n, 1, 1), device=x.device) - size_h // 2
    left = torch.randint(0, w + (1 - size_w % 2), (n, 1, 1), device=x.device) - size_w // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _with_probability(transform: Callable[[Tensor], Tensor], x: Tensor, p: Tensor | None) -> Tensor:
    if p is None:
        return transform(x)
    chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
    return torch.where(chosen, transform(x), x)


def diff_augment(
    x: Tensor,
    transforms: tuple[str, ...] = TRANSFORMS,
    p: Tensor | None = None,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
) -> Tensor:
    """``x`` (N, C, H, W) through the named transforms, in :data:`TRANSFORMS` order, each applied to each
    sample with probability ``p`` (None: always). Differentiable in ``x``; the identity for no transforms."""
    unknown = set(transforms) - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; expected some of {list(TRANSFORMS)}")
    ops: dict[str, Callable[[Tensor], Tensor]] = {
        "color": color,
        "translation": lambda t: translation(t, translation_ratio),
        "cutout": lambda t: cutout(t, cutout_ratio),
    }
    memory_format = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
    for name in TRANSFORMS:
        if name in transforms:
            x = _with_probability(ops[name], x, p)
    return x.contiguous(memory_format=memory_format) if memory_format is not None else x.contiguous()
