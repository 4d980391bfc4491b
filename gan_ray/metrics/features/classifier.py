"""The default feature extractor: a small CNN classifier trained once per dataset on its real images.

It needs no network and no pretrained weights; its penultimate layer is the Fréchet feature space.
Scores are comparable only under the same trained classifier: its ``cache_id`` names the weights.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_ray.data.catalog import DataSpec, dataset_info, spec_info
from gan_ray.data.images import data_identity, load_stored, to_unit_range
from gan_ray.metrics.features.cache import cached, try_load

log = logging.getLogger(__name__)


class ClassifierFeatures(nn.Module):
    """A small CNN classifier whose penultimate layer is the feature space of the Fréchet distance.

    Stride-2 convolutions bring any input side (8, 28, 32, 64) to about 4x4, then a global average pool,
    so one definition serves every dataset and size. No batch norm or dropout: train and eval mode compute
    the same function, so nothing depends on remembering ``.eval()``.
    """

    ARCH_VERSION = 2  # bump when the layers or their training change: it is part of the cache key

    def __init__(self, in_channels: int, image_size: int, num_features: int = 64, num_classes: int = 10):
        super().__init__()
        stem_stride = 2 if image_size >= 64 else 1  # 64x64 then costs what 32x32 does
        downsamples = max(1, round(math.log2(image_size / stem_stride / 4)))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 3, stride=stem_stride, padding=1), nn.ReLU()]
        width = 32
        for _ in range(downsamples):
            wider = min(2 * width, 128)
            layers += [nn.Conv2d(width, wider, 3, stride=2, padding=1), nn.ReLU()]
            width = wider
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]  # at ~4x4: sees the whole image
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_features), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(num_features, num_classes)
        self.in_channels = in_channels
        self.image_size = image_size
        self.num_features = num_features
        self.cache_id = "untrained"
        self.test_accuracy: float | None = None
        self.origin = "new"  # "built", "disk" or "memory": where the cache found it

    def forward(self, images: Tensor) -> Tensor:
        """Penultimate-layer features (N, num_features) of images (N, C, H, W) in [-1, 1]."""
        return self.body(images)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.body(images))


@torch.no_grad()
def accuracy(model: ClassifierFeatures, images: Tensor, labels: Tensor, device: torch.device | str) -> float:
    """The fraction of ``images`` the classifier labels right."""
    correct = 0
    for start in range(0, images.shape[0], 1000):
        batch = to_unit_range(images[start : start + 1000].to(device))
        correct += int((model.logits(batch).argmax(1).cpu() == labels[start : start + 1000]).sum())
    return correct / max(1, images.shape[0])


def train_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    num_features: int = 64,
    batch_size: int = 64,
    lr: float = 2e-3,
    epochs: int = 2,
    min_steps: int = 400,
    max_steps: int = 1500,
    num_classes: int | None = None,
) -> ClassifierFeatures:
    """Train a :class:`ClassifierFeatures` with Adam on ``images`` (uint8, or float in [-1, 1]; made float
    a batch at a time), holding out a seeded fifth (at most 5000) to measure ``test_accuracy``. Its head has
    ``num_classes`` outputs (None: one per label up to the largest).

    It runs ``epochs`` epochs, but at least ``min_steps`` steps (small sets such as digits) and at most
    ``max_steps`` (MNIST / CIFAR stay at a few minutes on a CPU). The caller's RNG state is left untouched.
    """
    device = torch.device(device)
    n = images.shape[0]
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    holdout = min(5000, n // 5)
    test_idx, train_idx = order[:holdout], order[holdout:]
    # The evaluator may be built inside a caller's no_grad / inference_mode block: train regardless
    # (indexing outside inference mode also turns inference-mode inputs into ordinary tensors).
    with torch.inference_mode(False), torch.enable_grad():
        x_train, y_train = images[train_idx], labels[train_idx]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            classes = num_classes if num_classes is not None else int(labels.max()) + 1
            model = ClassifierFeatures(
                images.shape[1], images.shape[-1], num_features=num_features, num_classes=classes
            )
        model.to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps_per_epoch = math.ceil(x_train.shape[0] / batch_size)
        steps = min(max_steps, max(min_steps, epochs * steps_per_epoch))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        for _ in range(steps):
            idx = torch.randint(0, x_train.shape[0], (batch_size,), generator=gen)
            x = to_unit_range(x_train[idx].to(device, non_blocking=True))
            y = y_train[idx].to(device, non_blocking=True)
            loss = F.cross_entropy(model.logits(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    model.test_accuracy = accuracy(model, images[test_idx], labels[test_idx], device)
    return model


def fingerprint(state_dict: dict[str, Tensor]) -> str:
    """A short hash of the weights: equal ids, equal extractor."""
    h = hashlib.sha1()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def classifier_file(spec: DataSpec, seed: int) -> str:
    """The cache file name of the classifier for ``spec``'s images and ``seed``."""
    c, h, w = spec_info(spec).sample_shape(spec.image_size)
    return f"classifier-{data_identity(spec)}-{c}x{h}x{w}-seed{seed}-v{ClassifierFeatures.ARCH_VERSION}.pt"


def _from_saved(saved: dict[str, Any], origin: str) -> ClassifierFeatures:
    meta = saved["meta"]
    model = ClassifierFeatures(
        meta["in_channels"],
        meta["image_size"],
        num_features=meta["num_features"],
        num_classes=meta.get("num_classes", 10),  # files written before folders had 10
    )
    model.load_state_dict(saved["state_dict"])
    model.cache_id = meta["cache_id"]
    model.test_accuracy = meta["test_accuracy"]
    model.origin = origin
    return model


def usable(saved: dict[str, Any] | None) -> bool:
    """A cached classifier this code's layers can load (not None, foreign or of another architecture)."""
    try:
        _from_saved(saved, "disk")
    except Exception:
        return False
    return True


def describe(
    model: ClassifierFeatures, dataset: str, seed: int, seconds: float | None = None
) -> dict[str, Any]:
    """A trained classifier as the cache (and a sweep's extractor file) saves it: weights and meta."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {
        "dataset": dataset,
        "in_channels": model.in_channels,
        "image_size": model.image_size,
        "num_features": model.num_features,
        "num_classes": model.head.out_features,
        "seed": seed,
        "arch_version": ClassifierFeatures.ARCH_VERSION,
        "test_accuracy": model.test_accuracy,
        "train_seconds": seconds,
        "cache_id": f"classifier-{fingerprint(state)}",
    }
    return {"state_dict": state, "meta": meta}


def _train_and_describe(spec: DataSpec, device: torch.device, seed: int) -> dict[str, Any]:
    images, labels = load_stored(spec, train=True)  # uint8 where stored so: made float per batch
    classes = dataset_info(spec.name).num_classes or None
    if dataset_info(spec.name).shaped_by_config:
        from gan_ray.data.prepared import load_prepared

        classes = load_prepared(spec).num_classes  # every class folder, even one whose files all failed
    log.info(
        "training the feature classifier for %s %s, once (then cached): minutes on a CPU",
        spec.name,
        tuple(images.shape[1:]),
    )
    start = time.perf_counter()
    model = train_classifier(images, labels, seed=seed, device=device, num_classes=classes)
    seconds = time.perf_counter() - start
    log.info("feature classifier: held-out accuracy %.3f in %.1f s", model.test_accuracy, seconds)
    return describe(model, spec.name, seed, seconds)


def load_classifier_file(path: Path, device: torch.device) -> ClassifierFeatures:
    """The classifier saved at ``path`` (a cache file, or a copy a sweep handed to its trials), frozen."""
    saved = try_load(path)
    if not usable(saved):
        raise FileNotFoundError(f"no usable feature classifier at {path}")
    return _from_saved(saved, "file").to(device).eval().requires_grad_(False)


def classifier_extractor(
    spec: DataSpec, cache_dir: Path, device: torch.device, seed: int
) -> ClassifierFeatures:
    """The cached classifier for ``spec`` (trained and saved the first time), on ``device``, frozen."""
    saved, origin = cached(
        cache_dir, classifier_file(spec, seed), lambda: _train_and_describe(spec, device, seed), usable
    )
    return _from_saved(saved, origin).to(device).eval().requires_grad_(False)
