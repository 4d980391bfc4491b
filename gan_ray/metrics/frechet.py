"""Image quality as a Fréchet distance (FID-like) between real and generated feature statistics.

The features come from a pluggable extractor: by default a small CNN classifier trained once per dataset
on the real labelled images and cached on disk (no network needed); Inception-v3 FID when asked for and
its weights are present locally. The distance itself is torchmetrics' ``FrechetInceptionDistance``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_ray.datasets import (
    IMAGE_DATASETS,
    TORCHVISION_DATASETS,
    data_shape,
    load_digits,
    load_images,
    load_torchvision,
    resize,
)

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance

    from gan_ray.config import DataConfig

__all__ = [
    "FEATURE_EXTRACTORS",
    "ClassifierFeatures",
    "FeatureExtractor",
    "FeatureExtractorUnavailable",
    "FrechetEvaluator",
    "clear_memo",
    "default_cache_dir",
    "frechet_distance",
    "get_feature_extractor",
    "load_labelled",
    "train_classifier",
]

log = logging.getLogger(__name__)

NUM_CLASSES = 10  # every image dataset gan_ray knows has ten classes
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's file name


class FeatureExtractorUnavailable(RuntimeError):
    """The requested feature extractor cannot be built here (a missing package or weights file)."""


@runtime_checkable
class FeatureExtractor(Protocol):
    """What :class:`FrechetEvaluator` needs: an ``nn.Module`` mapping images (N, C, H, W) in [-1, 1] to
    features (N, ``num_features``), and a ``cache_id`` naming its weights (it keys cached real statistics)."""

    num_features: int
    cache_id: str

    def __call__(self, images: Tensor) -> Tensor: ...


# ---------------------------------------------------------------------------------------------------------
# Labelled data


def load_labelled(cfg: DataConfig, train: bool = True) -> tuple[Tensor, Tensor]:
    """(images (N, C, H, W) in [-1, 1] resized to ``cfg.image_size``, int64 labels (N,)) of an image dataset.

    Digits has a single split, so ``train`` is ignored for it (as in :func:`gan_ray.datasets.load_images`).
    """
    if cfg.name == "digits":
        from sklearn.datasets import load_digits as _sk_load_digits

        images, labels = load_digits(), torch.from_numpy(_sk_load_digits().target).long()
    elif cfg.name in TORCHVISION_DATASETS:
        images = load_torchvision(cfg.name, cfg.root or "", download=cfg.download, train=train)
        labels = _torchvision_labels(cfg.name, cfg.root or "", train)
    else:
        raise ValueError(f"{cfg.name!r} is not an image dataset; expected one of {list(IMAGE_DATASETS)}")
    return resize(images, cfg.image_size), labels


def _torchvision_labels(name: str, root: str | Path, train: bool) -> Tensor:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    # load_torchvision has already validated (or downloaded) the files under root
    return torch.as_tensor(cls(str(Path(root).expanduser()), train=train, download=False).targets).long()


# ---------------------------------------------------------------------------------------------------------
# The classifier


class ClassifierFeatures(nn.Module):
    """A small CNN classifier whose penultimate layer is the feature space of the Fréchet distance.

    Stride-2 convolutions bring any input side (8, 28, 32, 64) to about 4x4, then a global average pool,
    so one definition serves every dataset and size. No batch norm or dropout: train and eval mode compute
    the same function, so nothing depends on remembering ``.eval()``.
    """

    ARCH_VERSION = 2  # bump when the layers or their training change: it is part of the cache key

    def __init__(
        self, in_channels: int, image_size: int, num_features: int = 64, num_classes: int = NUM_CLASSES
    ):
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
        self.origin = "new"  # "trained", "disk" or "memory": where get_feature_extractor found it

    def forward(self, images: Tensor) -> Tensor:
        """Penultimate-layer features (N, num_features) of images (N, C, H, W) in [-1, 1]."""
        return self.body(images)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.body(images))


@torch.no_grad()
def _accuracy(model: ClassifierFeatures, images: Tensor, labels: Tensor, device: torch.device) -> float:
    correct = 0
    for start in range(0, images.shape[0], 1000):
        batch = images[start : start + 1000].to(device)
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
) -> ClassifierFeatures:
    """Train a :class:`ClassifierFeatures` with Adam on ``images``, holding out a seeded fifth (at most 5000)
    to measure ``test_accuracy``.

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
            model = ClassifierFeatures(images.shape[1], images.shape[-1], num_features=num_features)
        model.to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps_per_epoch = math.ceil(x_train.shape[0] / batch_size)
        steps = min(max_steps, max(min_steps, epochs * steps_per_epoch))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        for _ in range(steps):
            idx = torch.randint(0, x_train.shape[0], (batch_size,), generator=gen)
            x, y = x_train[idx].to(device, non_blocking=True), y_train[idx].to(device, non_blocking=True)
            loss = F.cross_entropy(model.logits(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    model.test_accuracy = _accuracy(model, images[test_idx], labels[test_idx], device)
    return model


# ---------------------------------------------------------------------------------------------------------
# The cache: once per (dataset, shape, seed, architecture) on disk, once per process in memory

_MEMO: dict[tuple[str, str], tuple[dict[str, Tensor], dict[str, Any]]] = {}
_REAL_STATS_MEMO: dict[tuple[str, str], dict[str, Tensor]] = {}


def default_cache_dir() -> Path:
    """``$GAN_RAY_CACHE`` if set, else ``~/.cache/gan_ray``."""
    return Path(os.environ.get("GAN_RAY_CACHE") or Path.home() / ".cache" / "gan_ray").expanduser()


def clear_memo() -> None:
    """Forget the extractors and real statistics held in this process (the disk cache stays)."""
    _MEMO.clear()
    _REAL_STATS_MEMO.clear()


def _fingerprint(state_dict: dict[str, Tensor]) -> str:
    h = hashlib.sha1()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _atomic_save(obj: Any, path: Path) -> None:
    """Write through a temporary file in the same folder and rename it, so that concurrent writers and
    readers only ever see a complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _try_load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: rebuild it rather than fail the run
        return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so that trials starting together train once and the rest wait and load.
    Where ``fcntl`` is missing (Windows) it is a no-op: they may then train in duplicate, still safely."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _classifier_file(cfg: DataConfig, seed: int) -> str:
    c, h, w = data_shape(cfg)
    return f"classifier-{cfg.name}-{c}x{h}x{w}-seed{seed}-v{ClassifierFeatures.ARCH_VERSION}.pt"


def _classifier_from(state: dict[str, Tensor], meta: dict[str, Any], origin: str) -> ClassifierFeatures:
    model = ClassifierFeatures(meta["in_channels"], meta["image_size"], num_features=meta["num_features"])
    model.load_state_dict(state)
    model.cache_id = meta["cache_id"]
    model.test_accuracy = meta["test_accuracy"]
    model.origin = origin
    return model


def _classifier_extractor(
    cfg: DataConfig, cache_dir: Path, device: torch.device, seed: int
) -> ClassifierFeatures:
    name = _classifier_file(cfg, seed)
    path = cache_dir / name
    memo_key = (str(cache_dir.resolve()), name)
    origin = "memory"
    if memo_key not in _MEMO:
        origin = "disk"
        saved = _load_classifier(path)
        if saved is None:
            with _file_lock(path.with_name(name + ".lock")):
                saved = _load_classifier(path)  # another process may have trained it while we waited
                if saved is None:
                    origin = "trained"
                    saved = _train_and_save(cfg, path, device, seed)
        _MEMO[memo_key] = (saved["state_dict"], saved["meta"])
    state, meta = _MEMO[memo_key]
    return _classifier_from(state, meta, origin).to(device).eval().requires_grad_(False)


def _load_classifier(path: Path) -> dict[str, Any] | None:
    """The cached classifier at ``path``, or None when it is missing or does not fit this code's layers."""
    saved = _try_load(path)
    try:
        _classifier_from(saved["state_dict"], saved["meta"], "disk")
    except Exception:  # None, a foreign dict, or weights of another architecture
        return None
    return saved


def _train_and_save(cfg: DataConfig, path: Path, device: torch.device, seed: int) -> dict[str, Any]:
    images, labels = load_labelled(cfg, train=True)
    log.info(
        "training the feature classifier for %s %s (once; cached at %s)",
        cfg.name,
        tuple(images.shape[1:]),
        path,
    )
    start = time.perf_counter()
    model = train_classifier(images, labels, seed=seed, device=device)
    log.info(
        "feature classifier: held-out accuracy %.3f in %.1f s",
        model.test_accuracy,
        time.perf_counter() - start,
    )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {
        "dataset": cfg.name,
        "in_channels": model.in_channels,
        "image_size": model.image_size,
        "num_features": model.num_features,
        "seed": seed,
        "arch_version": ClassifierFeatures.ARCH_VERSION,
        "test_accuracy": model.test_accuracy,
        "train_seconds": time.perf_counter() - start,
        "cache_id": f"classifier-{_fingerprint(state)}",
    }
    saved = {"state_dict": state, "meta": meta}
    _atomic_save(saved, path)
    return saved


class _InceptionFeatures(nn.Module):
    """torchmetrics' Inception-v3 (torch-fidelity's weights) behind the [-1, 1] interface: 2048 features."""

    def __init__(self, weights_path: Path):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(weights_path),
        )
        self.num_features = 2048
        self.cache_id = "inception-v3-2048"
        self.test_accuracy: float | None = None
        self.origin = "disk"

    def forward(self, images: Tensor) -> Tensor:
        uint8 = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if uint8.shape[1] == 1:
            uint8 = uint8.expand(-1, 3, -1, -1)
        return self.net(uint8)


def _inception_weights(cache_dir: Path) -> Path | None:
    explicit = os.environ.get("GAN_RAY_INCEPTION_WEIGHTS")
    candidates = [Path(explicit).expanduser()] if explicit else []
    candidates += [
        cache_dir / INCEPTION_WEIGHTS_FILE,
        Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE,
    ]
    return next((p for p in candidates if p.is_file()), None)


def _inception_extractor(cfg: DataConfig, cache_dir: Path, device: torch.device, seed: int) -> nn.Module:
    del cfg, seed  # pretrained: the same network for every dataset
    if importlib.util.find_spec("torch_fidelity") is None:
        raise FeatureExtractorUnavailable(
            "feature extractor 'inception' needs the torch-fidelity package, which is not installed "
            "(pip install torch-fidelity); use kind='classifier' for the dataset-trained extractor"
        )
    weights = _inception_weights(cache_dir)
    if weights is None:
        raise FeatureExtractorUnavailable(
            f"feature extractor 'inception' needs the weights file {INCEPTION_WEIGHTS_FILE} locally (gan_ray "
            f"never downloads at run time): set GAN_RAY_INCEPTION_WEIGHTS to its path, or put it in "
            f"{cache_dir} or {Path(torch.hub.get_dir()) / 'checkpoints'}; or use kind='classifier'"
        )
    return _InceptionFeatures(weights).to(device).eval()


ExtractorBuilder = Callable[["DataConfig", Path, torch.device, int], nn.Module]

#: kind -> builder(data_cfg, cache_dir, device, seed) returning a :class:`FeatureExtractor`.
FEATURE_EXTRACTORS: dict[str, ExtractorBuilder] = {
    "classifier": _classifier_extractor,
    "inception": _inception_extractor,
}


def get_feature_extractor(
    data_cfg: DataConfig,
    kind: str = "classifier",
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> nn.Module:
    """The feature extractor ``kind`` for ``data_cfg``'s images, on ``device``, in eval mode, without grads.

    ``classifier`` trains a :class:`ClassifierFeatures` the first time for a (dataset, image shape,
    ``seed``, architecture version) and caches it under ``cache_dir`` (default :func:`default_cache_dir`);
    later calls load it, and calls in the same process reuse it from memory. Keep ``seed`` fixed across a
    sweep (it is not the trial's seed): distances are comparable only under the same extractor.
    ``inception`` is torchmetrics' Inception-v3; it raises :class:`FeatureExtractorUnavailable` unless
    torch-fidelity and its weights file are present locally.
    """
    if kind not in FEATURE_EXTRACTORS:
        raise ValueError(f"unknown feature extractor {kind!r}; expected one of {sorted(FEATURE_EXTRACTORS)}")
    if data_cfg.name not in IMAGE_DATASETS:
        raise ValueError(
            f"a Fréchet distance needs an image dataset, got {data_cfg.name!r}; "
            f"expected one of {list(IMAGE_DATASETS)}"
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return FEATURE_EXTRACTORS[kind](data_cfg, cache, torch.device(device), seed)


# ---------------------------------------------------------------------------------------------------------
# The distance


class _Identity(nn.Module):
    """Features in, features out: lets the torchmetrics metric take precomputed features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def _fid_metric(extractor: nn.Module) -> FrechetInceptionDistance:
    from torchmetrics.image.fid import FrechetInceptionDistance

    # A custom module receives the images unchanged (``normalize`` only matters for Inception's uint8).
    # sync_on_compute=False: the evaluator may run on one rank of a DDP group; an all-gather would hang.
    return FrechetInceptionDistance(feature=extractor, reset_real_features=False, sync_on_compute=False)


def _compute(metric: FrechetInceptionDistance) -> float:
    fake_ok = (
        torch.isfinite(metric.fake_features_sum).all() and torch.isfinite(metric.fake_features_cov_sum).all()
    )
    if not bool(fake_ok):
        return math.inf
    value = float(metric.compute().double())
    if not math.isfinite(value):
        return math.inf
    return max(value, 0.0)  # the eigenvalue route can land a hair below zero for identical sets


@torch.no_grad()
def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted (in float64) to two feature sets (N, F) and (M, F)."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"expected two (N, F) feature sets with the same F, "
            f"got {tuple(features_a.shape)} and {tuple(features_b.shape)}"
        )
    if min(features_a.shape[0], features_b.shape[0]) < 2:
        raise ValueError("a Fréchet distance needs at least 2 samples in each set")
    metric = _fid_metric(_Identity(features_a.shape[1])).to(features_a.device)
    metric.update(features_a.double(), real=True)
    metric.update(features_b.double().to(features_a.device), real=False)
    return _compute(metric)


def _valid_stats(stats: dict[str, Any] | None, num_features: int) -> bool:
    try:
        return (
            stats["features_sum"].shape == (num_features,)
            and stats["features_cov_sum"].shape == (num_features, num_features)
            and int(stats["num_samples"]) >= 2
        )
    except (TypeError, KeyError, AttributeError):
        return False


class FrechetEvaluator:
    """The image-quality metric of one run: ``evaluate(fake_images)`` is the Fréchet distance between the
    extractor's features of generated images and of ``num_real`` real ones (lower is better, 0 = same).

    Built once per run; the extractor and the real statistics are cached on disk and in memory, so trials
    of a sweep share them. ``classifier_accuracy`` is the held-out accuracy of the classifier extractor.
    The distance is biased upwards for small sample counts: compare runs at the same ``len(fake_images)``.
    """

    def __init__(
        self,
        data_cfg: DataConfig,
        device: torch.device | str = "cpu",
        cache_dir: str | Path | None = None,
        num_real: int = 10_000,
        kind: str = "classifier",
        extractor_seed: int = 0,
        batch_size: int = 500,
    ):
        if num_real < 2:
            raise ValueError(f"num_real must be at least 2, got {num_real}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.shape = data_shape(data_cfg)
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.extractor = get_feature_extractor(data_cfg, kind, cache, self.device, seed=extractor_seed)
        self.classifier_accuracy: float | None = getattr(self.extractor, "test_accuracy", None)
        self._metric = _fid_metric(self.extractor).to(self.device)
        stats = self._real_stats(data_cfg, cache, num_real)
        self.num_real = int(stats["num_samples"])
        self._metric.real_features_sum = stats["features_sum"].to(self.device)
        self._metric.real_features_cov_sum = stats["features_cov_sum"].to(self.device)
        self._metric.real_features_num_samples = stats["num_samples"].to(self.device)

    def _real_stats(self, cfg: DataConfig, cache_dir: Path, num_real: int) -> dict[str, Tensor]:
        c, h, w = self.shape
        name = f"real-{cfg.name}-{c}x{h}x{w}-n{num_real}-{self.extractor.cache_id}.pt"
        memo_key = (str(cache_dir.resolve()), name)
        if memo_key in _REAL_STATS_MEMO:
            return _REAL_STATS_MEMO[memo_key]
        stats = _try_load(cache_dir / name)
        if not _valid_stats(stats, self.extractor.num_features):
            images = load_images(cfg)
            pick = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))[:num_real]
            self._update(images[pick], real=True)
            stats = {
                "features_sum": self._metric.real_features_sum.cpu().clone(),
                "features_cov_sum": self._metric.real_features_cov_sum.cpu().clone(),
                "num_samples": self._metric.real_features_num_samples.cpu().clone(),
            }
            _atomic_save(stats, cache_dir / name)
        _REAL_STATS_MEMO[memo_key] = stats
        return stats

    @torch.no_grad()
    def _update(self, images: Tensor, real: bool) -> None:
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start : start + self.batch_size].to(self.device, torch.float32, non_blocking=True)
            self._metric.update(batch, real=real)

    @torch.no_grad()
    def evaluate(self, fake_images: Tensor) -> float:
        """Fréchet distance of generated images (N, C, H, W) in [-1, 1] to the real ones.

        ``inf`` when any generated value is NaN/inf (a diverged generator), so a minimising search ranks
        the trial last instead of crashing.
        """
        if tuple(fake_images.shape[1:]) != self.shape or fake_images.shape[0] < 2:
            raise ValueError(
                f"expected at least 2 generated images of shape {self.shape}, "
                f"got a tensor of shape {tuple(fake_images.shape)}"
            )
        if not bool(torch.isfinite(fake_images).all()):
            return math.inf
        self._metric.reset()  # fake statistics only: reset_real_features=False keeps the real ones
        self._update(fake_images.detach(), real=False)
        return _compute(self._metric)
