"""Image datasets as one tensor: scikit-learn's 8x8 digits, torchvision's MNIST, Fashion-MNIST and
CIFAR-10 read from a local root (downloaded only when asked), and folder's prepared file; as uint8 where
the set is 8-bit (what training keeps on the device), or as float in [-1, 1] (what metrics read)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_ray.data.batches import TensorSource  # noqa: F401  (where it lived before batches.py)
from gan_ray.data.catalog import DataSpec, dataset_info
from gan_ray.errors import DatasetNotFoundError


def load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images) as ((N, 1, 8, 8) in [-1, 1], labels (N,))."""
    from sklearn.datasets import load_digits as _load

    digits = _load()
    x = torch.from_numpy(digits.images).float()
    return (x / 16.0 * 2 - 1).unsqueeze(1), torch.from_numpy(digits.target).long()


def _torchvision_class(name: str):
    import torchvision.datasets as tvd

    return getattr(tvd, dataset_info(name).torchvision_class)


def expected_files(name: str, root: str | Path) -> list[Path]:
    """The files torchvision reads for dataset ``name`` under ``root`` (both splits)."""
    cls = _torchvision_class(name)
    root = Path(root).expanduser()
    if hasattr(cls, "resources"):  # the MNIST family: ROOT/<Class>/raw/<file>, unpacked
        raw = root / cls.__name__ / "raw"
        return [raw / Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    # CIFAR: ROOT/<base_folder>/<batch files>, and the class names' file, which its constructor reads too
    names = [f for f, _ in (*cls.train_list, *cls.test_list)] + [cls.meta["filename"]]
    return [root / cls.base_folder / f for f in names]


def check_files(name: str, root: str | Path | None, download: bool = False) -> None:
    """Raise :class:`DatasetNotFoundError` unless dataset ``name``'s own files are under ``root``.

    The files, not just the folder: a root holding Fashion-MNIST must not pass for MNIST.
    Nothing to check for generated data, digits (bundled), or when a download is asked for.
    """
    if not dataset_info(name).needs_root or download:
        return
    root = Path(root or "").expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(_missing_message(name, root, "the folder does not exist"))
    missing = [p for p in expected_files(name, root) if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(_missing_message(name, root, f"missing {_by_folder(missing, root)}"))


def _by_folder(paths: list[Path], root: Path) -> str:
    """``MNIST/raw/{a, b}``: every missing file named, in one short phrase per folder."""
    folders: dict[Path, list[str]] = {}
    for p in paths:
        folders.setdefault(p.parent.relative_to(root), []).append(p.name)
    return ", ".join(
        f"{folder}/{names[0]}" if len(names) == 1 else f"{folder}/{{{', '.join(names)}}}"
        for folder, names in folders.items()
    )


def _missing_message(name: str, root: Path, why: str) -> str:
    return (
        f"dataset {name!r} not found under data.root {str(root)!r} ({why}); get it with "
        f"{download_command(name, root)} (on every node of a cluster), point data.root at a torchvision "
        f"root holding it, or set data.download: true"
    )


def download_command(name: str, root: str | Path) -> str:
    """The shell line that puts dataset ``name`` under ``root`` as torchvision reads it. One call gets
    both splits: torchvision downloads every file of the set, whatever its ``train`` argument says."""
    cls = dataset_info(name).torchvision_class
    return f"python -c \"import torchvision; torchvision.datasets.{cls}('{root}', download=True)\""


def load_torchvision_uint8(
    name: str, root: str | Path, download: bool = False, train: bool = True
) -> tuple[Tensor, Tensor]:
    """MNIST / Fashion-MNIST / CIFAR-10 from a local torchvision root, as (uint8 (N, C, H, W), labels).

    Downloads only when ``download`` is set; missing files are an error, never a network wait.
    """
    check_files(name, root, download)
    try:
        ds = _torchvision_class(name)(str(Path(root).expanduser()), train=train, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise DatasetNotFoundError(_missing_message(name, Path(root), str(err))) from None
    data = torch.as_tensor(ds.data)
    if data.dim() == 3:  # MNIST-style (N, H, W) uint8
        data = data.unsqueeze(1)
    else:  # CIFAR (N, H, W, C) uint8
        data = data.permute(0, 3, 1, 2)
    return data.contiguous(), torch.as_tensor(ds.targets).long()


def load_torchvision(
    name: str, root: str | Path, download: bool = False, train: bool = True
) -> tuple[Tensor, Tensor]:
    """MNIST / Fashion-MNIST / CIFAR-10 from a local torchvision root, as ((N, C, H, W) in [-1, 1], labels)."""
    images, labels = load_torchvision_uint8(name, root, download, train)
    return to_unit_range(images).contiguous(), labels


def resize(images: Tensor, size: int | None) -> Tensor:
    if size is None or images.shape[-1] == size:
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    ).clamp_(-1, 1)


def data_identity(spec: DataSpec) -> str:
    """What names a spec's images in cache file names: the dataset's name, and for ``folder`` the key of
    its prepared file as well (two folders, or one folder before and after a change, are other data)."""
    info = dataset_info(spec.name)
    if not info.shaped_by_config:
        return info.name
    from gan_ray.data.prepared import load_prepared

    return f"{info.name}-{load_prepared(spec).manifest['key'][:16]}"


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 images as float in [-1, 1] (x / 127.5 - 1); float images as they are."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] as uint8, rounded (the inverse of :func:`to_unit_range` on uint8 values)."""
    return images.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def load_stored(spec: DataSpec, train: bool = True) -> tuple[Tensor, Tensor]:
    """(images (N, C, H, W) as stored, at ``spec.image_size``: uint8 where the set is 8-bit (the
    torchvision sets, folder), float in [-1, 1] otherwise (digits, plug-ins); int64 labels (N,)).

    What the training source keeps on the device: uint8 takes a quarter of float32's memory. A resized
    8-bit set is rounded back to uint8 after resizing. ``folder`` is read from its prepared file
    (decoded once, memory-mapped; :mod:`gan_ray.data.prepared`) and has a single split.
    """
    info = dataset_info(spec.name)
    if info.is_mixture:
        raise ValueError(f"{spec.name!r} is not an image dataset")
    if info.shaped_by_config:
        from gan_ray.data.prepared import load_prepared

        prepared = load_prepared(spec)
        with warnings.catch_warnings():  # read-only by design: a memmap of the file every trial shares
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            images = torch.from_numpy(prepared.images)
        return images, torch.from_numpy(prepared.labels)
    if info.load is not None:  # a plug-in reads itself
        images, labels = _plugin_images(spec, info.load, train)
        return resize(images, spec.image_size), labels
    if spec.name == "digits":
        images, labels = load_digits()
        return resize(images, spec.image_size), labels
    images, labels = load_torchvision_uint8(spec.name, spec.root or "", download=spec.download, train=train)
    if spec.image_size is not None and images.shape[-1] != spec.image_size:
        images = to_uint8(resize(to_unit_range(images), spec.image_size))
    return images, labels


def load_labelled(spec: DataSpec, train: bool = True) -> tuple[Tensor, Tensor]:
    """(images (N, C, H, W) in [-1, 1] resized to ``spec.image_size``, int64 labels (N,)).

    Digits and folder have a single split, so ``train`` is ignored for them.
    """
    info = dataset_info(spec.name)
    if info.is_mixture:
        raise ValueError(f"{spec.name!r} is not an image dataset")
    if info.load is not None and not info.shaped_by_config:  # a plug-in reads itself
        images, labels = _plugin_images(spec, info.load, train)
    elif spec.name == "digits":
        images, labels = load_digits()
    elif info.shaped_by_config:
        images, labels = load_stored(spec, train)
        return to_unit_range(images), labels
    else:
        images, labels = load_torchvision(spec.name, spec.root or "", download=spec.download, train=train)
    return resize(images, spec.image_size), labels


def _plugin_images(spec: DataSpec, load, train: bool) -> tuple[Tensor, Tensor]:
    """A plug-in's (images, labels), checked: float (N, C, H, W) in [-1, 1] of its declared shape."""
    info = dataset_info(spec.name)
    images, labels = load(spec, train)
    want = (info.channels, info.native_size, info.native_size)
    if not isinstance(images, Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != want:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"dataset {spec.name!r}: load() returned images {got}; expected (N, *{want})")
    if labels is None:
        labels = torch.zeros(images.shape[0], dtype=torch.long)
    return images.float(), torch.as_tensor(labels).long()


def load_images(spec: DataSpec, train: bool = True) -> Tensor:
    """The images of ``spec`` as one CPU tensor (N, C, H, W) in [-1, 1], resized to ``image_size``."""
    return load_labelled(spec, train)[0]
