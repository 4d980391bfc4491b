"""Training data: 2-D Gaussian mixtures generated on the fly, and image sets held as one tensor.

Both kinds are *sources* with ``sample(n)`` returning a batch on the training device, drawn by
index from a device-resident tensor (or generated there): no DataLoader round-trip per step, and
no host sync, so the whole step can be captured in a CUDA graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from gan_ray.config import DataConfig

MIXTURE_DATASETS = ("ring8", "grid25")
TORCHVISION_DATASETS = ("mnist", "fashion_mnist", "cifar10")
IMAGE_DATASETS = ("digits", *TORCHVISION_DATASETS)
DATASETS = MIXTURE_DATASETS + IMAGE_DATASETS


@dataclass(frozen=True)
class Mixture:
    """An isotropic Gaussian mixture with equal weights."""

    modes: Tensor  # (M, 2)
    std: float


def mixture(name: str) -> Mixture:
    """``ring8``: 8 modes on the unit circle, std 0.01. ``grid25``: modes at {-4,-2,0,2,4}^2, std 0.05."""
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return Mixture(torch.stack([angles.cos(), angles.sin()], dim=1).float(), 0.01)
    if name == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return Mixture(torch.cartesian_prod(axis, axis), 0.05)
    raise ValueError(f"unknown mixture {name!r}; expected one of {list(MIXTURE_DATASETS)}")


class DataSource(Protocol):
    shape: tuple[int, ...]  # one sample's shape

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


class MixtureSource:
    """Fresh samples of a Gaussian mixture, generated on the device (the data are infinite)."""

    def __init__(self, name: str, device: torch.device | str = "cpu"):
        m = mixture(name)
        self.modes = m.modes.to(device)
        self.std = m.std
        self.shape = (2,)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.randint(0, self.modes.shape[0], (n,), device=self.modes.device, generator=generator)
        noise = torch.randn(n, 2, device=self.modes.device, generator=generator)
        return self.modes[idx] + self.std * noise


class TensorSource:
    """Batches drawn uniformly with replacement, by index, from a tensor kept on the device."""

    def __init__(self, data: Tensor, device: torch.device | str = "cpu"):
        if data.shape[0] == 0:
            raise ValueError("dataset is empty")
        self.data = data.to(device)
        self.shape = tuple(data.shape[1:])

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.randint(0, self.data.shape[0], (n,), device=self.data.device, generator=generator)
        return self.data[idx]


def load_digits() -> Tensor:
    """scikit-learn's bundled 8x8 digits (1797 images), as (N, 1, 8, 8) in [-1, 1]."""
    from sklearn.datasets import load_digits as _load

    x = torch.from_numpy(_load().images).float()
    return (x / 16.0 * 2 - 1).unsqueeze(1)


def load_torchvision(name: str, root: str | Path, download: bool = False, train: bool = True) -> Tensor:
    """MNIST / Fashion-MNIST / CIFAR-10 from a local torchvision root, as (N, C, H, W) in [-1, 1].

    Downloads only when ``download`` is set; a missing root is an error, never a network wait.
    """
    import torchvision.datasets as tvd

    root = Path(root).expanduser()
    if not download and not root.is_dir():
        raise FileNotFoundError(_missing_root_message(name, root))
    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    try:
        ds = cls(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise FileNotFoundError(f"{name!r} not found under {str(root)!r}: {err}") from None
    data = torch.as_tensor(ds.data)
    if data.dim() == 3:  # MNIST-style (N, H, W) uint8
        data = data.unsqueeze(1)
    else:  # CIFAR (N, H, W, C) uint8
        data = data.permute(0, 3, 1, 2)
    return data.float().div_(127.5).sub_(1.0).contiguous()


def resize(images: Tensor, size: int | None) -> Tensor:
    if size is None or images.shape[-1] == size:
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    ).clamp_(-1, 1)


def load_images(cfg: DataConfig, train: bool = True) -> Tensor:
    """The image dataset of ``cfg`` as one CPU tensor (N, C, H, W) in [-1, 1], resized to ``image_size``."""
    if cfg.name == "digits":
        images = load_digits()
    elif cfg.name in TORCHVISION_DATASETS:
        images = load_torchvision(cfg.name, cfg.root or "", download=cfg.download, train=train)
    else:
        raise ValueError(f"{cfg.name!r} is not an image dataset; expected one of {list(IMAGE_DATASETS)}")
    return resize(images, cfg.image_size)


def data_shape(cfg: DataConfig) -> tuple[int, ...]:
    """One sample's shape, without loading the data."""
    if cfg.name in MIXTURE_DATASETS:
        return (2,)
    channels = 3 if cfg.name == "cifar10" else 1
    native = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32}[cfg.name]
    size = cfg.image_size or native
    return (channels, size, size)


def make_source(
    cfg: DataConfig, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1
) -> MixtureSource | TensorSource:
    """The training source for ``cfg`` on ``device``; with several workers each rank keeps its own shard."""
    if cfg.name in MIXTURE_DATASETS:
        return MixtureSource(cfg.name, device)
    images = load_images(cfg)
    return TensorSource(images[rank::world_size], device)


def check_available(cfg: DataConfig) -> None:
    """Fail fast, before workers start, when a torchvision dataset's root is missing and no download is asked."""
    if cfg.name in TORCHVISION_DATASETS and not cfg.download:
        root = Path(cfg.root or "").expanduser()
        if not root.is_dir():
            raise FileNotFoundError(_missing_root_message(cfg.name, root))


def _missing_root_message(name: str, root: Path) -> str:
    return (
        f"dataset root {str(root)!r} for {name!r} does not exist; point data.root at a torchvision root "
        f"holding the files, or set data.download: true on a machine with internet access"
    )
