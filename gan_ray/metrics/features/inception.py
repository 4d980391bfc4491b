"""Inception-v3 features (torch-fidelity's weights, through torchmetrics), where the weights are present.

gan_ray never downloads at run time: the weights file must already be on disk.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor, nn

from gan_ray import settings
from gan_ray.data.catalog import DataSpec
from gan_ray.errors import FeatureExtractorUnavailable

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's file name


class InceptionFeatures(nn.Module):
    """torchmetrics' Inception-v3 behind the [-1, 1] interface: 2048 features."""

    def __init__(self, weights_path: Path):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(weights_path),
            # torch-fidelity's TF1-style bilinear resize to 299, what published FIDs use; torchmetrics'
            # default (antialias=True) resizes otherwise and shifts the scores
            antialias=False,
        )
        self.num_features = 2048
        self.cache_id = "inception-v3-2048-tf1resize"  # cached statistics of the antialiased resize differ
        self.test_accuracy: float | None = None
        self.origin = "disk"

    def forward(self, images: Tensor) -> Tensor:
        uint8 = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if uint8.shape[1] == 1:
            uint8 = uint8.expand(-1, 3, -1, -1)
        return self.net(uint8)


def weights_path(cache_dir: Path) -> Path | None:
    """The first weights file found: ``$GAN_RAY_INCEPTION_WEIGHTS``, the cache, torch hub's checkpoints."""
    explicit = settings.inception_weights()
    candidates = [explicit] if explicit else []
    candidates += [cache_dir / WEIGHTS_FILE, Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE]
    return next((p for p in candidates if p.is_file()), None)


def check_inception(cache_dir: Path | None = None) -> Path:
    """The weights file Inception features need, or :class:`FeatureExtractorUnavailable` in one line."""
    cache_dir = cache_dir if cache_dir is not None else settings.cache_dir()
    if importlib.util.find_spec("torch_fidelity") is None:
        raise FeatureExtractorUnavailable(
            "feature extractor 'inception' needs the torch-fidelity package, which is not installed "
            "(pip install torch-fidelity); use kind='classifier' for the dataset-trained extractor"
        )
    weights = weights_path(cache_dir)
    if weights is None:
        raise FeatureExtractorUnavailable(
            f"feature extractor 'inception' needs the weights file {WEIGHTS_FILE} locally (gan_ray "
            f"never downloads at run time): set GAN_RAY_INCEPTION_WEIGHTS to its path, or put it in "
            f"{cache_dir} or {Path(torch.hub.get_dir()) / 'checkpoints'}; or use kind='classifier'"
        )
    return weights


def inception_extractor(spec: DataSpec, cache_dir: Path, device: torch.device, seed: int) -> nn.Module:
    del spec, seed  # pretrained: the same network for every dataset
    return InceptionFeatures(check_inception(cache_dir)).to(device).eval()
