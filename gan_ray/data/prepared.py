"""Decode a folder of images once: the prepared file, its cache key, and reading it back memory-mapped.

A prepared file is an ``.npy`` of the images, uint8 (N, C, H, W), so ``np.load(path, mmap_mode="r")``
reads them as they are; after the array come the labels (a second ``.npy`` block, int64 (N,)), the
manifest (JSON: images per class, files skipped and why, the source's listing) and a 24-byte trailer
(magic, the labels' offset, the manifest's offset). It is written atomically, so a reader never sees
half of one. Its name carries the cache key: the source's file list, sizes and mtimes, and the
preprocessing (size, channels, labels, decoder version); a source that changes gets a new file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from gan_ray import settings
from gan_ray.data.decode import DECODE_VERSION, IMAGE_SUFFIXES, SkippedImage, decode
from gan_ray.data.image_files import FileEntry, ImageFiles, open_files
from gan_ray.errors import DatasetNotFoundError
from gan_ray.files import atomic_write, file_lock

log = logging.getLogger(__name__)

MAGIC = b"GANRAYP1"
TRAILER = struct.Struct("<8sQQ")
SUFFIX = ".npy"
#: Paths kept per skip reason in the manifest (the counts are complete).
EXAMPLES_PER_REASON = 5


@dataclass(frozen=True)
class Preprocessing:
    """What decoding makes of a source: part of the cache key (``mirror`` is not: it is applied per batch)."""

    size: int
    channels: int = 3
    labels: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "channels": self.channels,
            "labels": self.labels,
            "decoder": DECODE_VERSION,
        }


@dataclass
class Plan:
    """Which files become which images, before any is decoded."""

    files: list[tuple[str, int]] = field(default_factory=list)  # (path, label)
    classes: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, path: str, reason: str) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(path)


@dataclass
class PreparedImages:
    """A prepared file, read back: images memory-mapped, labels and manifest in memory."""

    path: Path
    images: np.ndarray  # uint8 (N, C, H, W), a read-only memmap
    labels: np.ndarray  # int64 (N,)
    manifest: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.get("classes", []))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> str:
        """One line: what the file holds and what was left out."""
        return summary_line(self.manifest)


def cache_key(root: str, listing: list[FileEntry], prep: Preprocessing) -> str:
    """A hash of the source's file list (paths, sizes, mtimes) and the preprocessing."""
    h = hashlib.sha256()
    h.update(json.dumps({"root": root, "prep": prep.as_dict()}, sort_keys=True).encode())
    for e in listing:
        h.update(f"{e.path}\0{e.size}\0{e.mtime_ns}\n".encode())
    return h.hexdigest()


def file_name(root: str, prep: Preprocessing, key: str) -> str:
    """``folder-<root hash>-<C>x<N>x<N>-<labels>-<key>.npy``: one root's files share their start."""
    return f"{_stem(root, prep)}-{key[:16]}{SUFFIX}"


def _stem(root: str, prep: Preprocessing) -> str:
    where = hashlib.sha1(root.encode()).hexdigest()[:8]
    return f"folder-{where}-{prep.channels}x{prep.size}x{prep.size}-{prep.labels}"


def plan_files(listing: Iterable[FileEntry], labels: str) -> Plan:
    """Labels from the first folder below the root (torchvision's ImageFolder layout); a flat folder, or
    ``labels: none``, has none. With class folders, an image beside them is skipped, never given a class."""
    plan = Plan()
    images = []
    for e in listing:
        if PurePosixPath(e.path).suffix.lower() in IMAGE_SUFFIXES:
            images.append(e.path)
        else:
            plan.skip(e.path, "not a PNG, JPEG or WebP file")
    in_folders = [p for p in images if "/" in p]
    if labels == "none" or not in_folders:
        plan.files = [(p, 0) for p in images]
        return plan
    plan.classes = sorted({p.split("/", 1)[0] for p in in_folders})
    index = {c: i for i, c in enumerate(plan.classes)}
    for p in images:
        if "/" in p:
            plan.files.append((p, index[p.split("/", 1)[0]]))
        else:
            plan.skip(p, "beside the class folders, in none of them")
    return plan


def _decode_into(
    files: ImageFiles, plan: Plan, prep: Preprocessing, scratch: np.ndarray, threads: int
) -> tuple[np.ndarray, Counter, int]:
    """Decode every planned file into ``scratch`` (by position); (which rows hold an image, the files'
    modes, how many were upscaled from a short side below the size)."""
    ok = np.zeros(len(plan.files), dtype=bool)
    modes: Counter = Counter()
    upscaled = 0

    def one(i: int) -> tuple[int, str | None, str, bool]:
        path = plan.files[i][0]
        try:
            arr, mode, dims = decode(files.read(path), prep.size, prep.channels)
        except SkippedImage as err:
            return i, str(err), "", False
        except (OSError, ValueError) as err:  # a file that vanished or a damaged zip member
            return i, f"unreadable ({type(err).__name__})", "", False
        scratch[i] = arr
        return i, None, mode, min(dims) < prep.size

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, reason, mode, up in pool.map(one, range(len(plan.files)), chunksize=64):
            if reason is not None:
                plan.skip(plan.files[i][0], reason)
                continue
            ok[i] = True
            modes[mode] += 1
            upscaled += up
    return ok, modes, upscaled


def _write(
    f: IO[bytes], scratch: np.ndarray, rows: np.ndarray, labels: np.ndarray, manifest: dict[str, Any]
) -> None:
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(rows), *scratch.shape[1:])}
    np.lib.format.write_array_header_1_0(f, header)
    for start in range(0, len(rows), 4096):  # in slices: the set need not fit in memory twice
        f.write(np.ascontiguousarray(scratch[rows[start : start + 4096]]).tobytes())
    labels_at = f.tell()
    np.lib.format.write_array(f, labels.astype(np.int64), allow_pickle=False)
    manifest_at = f.tell()
    f.write(json.dumps(manifest).encode())
    f.write(TRAILER.pack(MAGIC, labels_at, manifest_at))


def read_prepared(path: str | Path) -> PreparedImages:
    """A prepared file; :class:`DatasetNotFoundError` in one line when it is missing or not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(f"prepared file {str(path)!r} not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size < TRAILER.size:
            raise DatasetNotFoundError(f"{str(path)!r} is not a prepared image file (too short)")
        f.seek(size - TRAILER.size)
        magic, labels_at, manifest_at = TRAILER.unpack(f.read(TRAILER.size))
        if magic != MAGIC or not labels_at < manifest_at < size:
            raise DatasetNotFoundError(
                f"{str(path)!r} is not a prepared image file (truncated, or written by something else)"
            )
        f.seek(labels_at)
        labels = np.lib.format.read_array(f, allow_pickle=False)
        f.seek(manifest_at)
        manifest = json.loads(f.read(size - TRAILER.size - manifest_at))
    images = np.load(path, mmap_mode="r")
    return PreparedImages(path, images, labels, manifest)


def summary_line(manifest: dict[str, Any]) -> str:
    """``1,000 images 1x28x28 in 10 classes; skipped 3 (corrupt or truncated 2, ...); modes L 990, ...``."""
    c, s = manifest["preprocessing"]["channels"], manifest["preprocessing"]["size"]
    classes = manifest.get("classes") or []
    labelled = f"in {len(classes)} classes" if classes else "without labels"
    line = f"{manifest['count']:,} images {c}x{s}x{s} {labelled} from {manifest['source']}"
    skipped = manifest.get("skipped") or {}
    if skipped:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
        line += f"; skipped {sum(skipped.values()):,} ({reasons})"
    modes = manifest.get("source_modes") or {}
    if len(modes) > 1:
        line += "; modes " + ", ".join(f"{m} {n}" for m, n in sorted(modes.items(), key=lambda kv: -kv[1]))
    if manifest.get("upscaled"):
        line += f"; {manifest['upscaled']:,} upscaled (short side under {s})"
    return line


def _no_images_message(root: str, listing: list[FileEntry], plan: Plan) -> str:
    if not listing:
        return f"data.root {root!r}: no files in it"
    if not plan.files and not any(r.startswith("beside") for r in plan.skipped):
        shown = ", ".join(e.path for e in listing[:3])
        return f"data.root {root!r}: {len(listing)} file(s) but no PNG, JPEG or WebP image (e.g. {shown})"
    reasons = ", ".join(f"{r}: {n}" for r, n in plan.skipped.items())
    return f"data.root {root!r}: none of its {len(listing)} file(s) could be used ({reasons})"


def _manifest(root, key, prep, plan, labels, ok, modes, upscaled, listing) -> dict[str, Any]:
    per_class = Counter(labels.tolist())
    return {
        "format": 1,
        "source": root,
        "key": key,
        "preprocessing": prep.as_dict(),
        "count": int(ok.sum()),
        "classes": plan.classes,
        "per_class": {c: per_class.get(i, 0) for i, c in enumerate(plan.classes)},
        "skipped": dict(plan.skipped),
        "skipped_examples": plan.examples,
        "source_modes": dict(modes),
        "upscaled": int(upscaled),
        "files": [[e.path, e.size, e.mtime_ns] for e in listing],
    }


def build(files: ImageFiles, listing: list[FileEntry], prep: Preprocessing, path: Path, key: str) -> Path:
    """Decode the source into the prepared file ``path`` (atomically), through a scratch memmap beside it."""
    plan = plan_files(listing, prep.labels)
    if not plan.files:
        raise DatasetNotFoundError(_no_images_message(files.root, listing, plan))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch_path = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".scratch")
    os.close(fd)
    try:
        shape = (len(plan.files), prep.channels, prep.size, prep.size)
        scratch = np.lib.format.open_memmap(scratch_path, mode="w+", dtype=np.uint8, shape=shape)
        ok, modes, upscaled = _decode_into(files, plan, prep, scratch, threads=min(8, os.cpu_count() or 1))
        if not ok.any():
            raise DatasetNotFoundError(_no_images_message(files.root, listing, plan))
        rows = np.flatnonzero(ok)
        labels = np.array([plan.files[i][1] for i in rows], dtype=np.int64)
        manifest = _manifest(files.root, key, prep, plan, labels, ok, modes, upscaled, listing)
        atomic_write(path, lambda f: _write(f, scratch, rows, labels, manifest))
    finally:
        Path(scratch_path).unlink(missing_ok=True)
    return path


def changes(old: dict[str, Any], listing: list[FileEntry]) -> str:
    """What changed in a source since ``old`` (a manifest) listed it: ``2 added, 1 removed, 3 modified``."""
    before = {p: (s, m) for p, s, m in old.get("files", [])}
    now = {e.path: (e.size, e.mtime_ns) for e in listing}
    added = len(now.keys() - before.keys())
    removed = len(before.keys() - now.keys())
    modified = sum(1 for p in now.keys() & before.keys() if now[p] != before[p])
    return f"{added} added, {removed} removed, {modified} modified"


def _earlier(cache: Path, root: str, prep: Preprocessing) -> Path | None:
    """The newest prepared file of the same root and preprocessing (another key: the source changed)."""
    found = sorted(cache.glob(_stem(root, prep) + "-*" + SUFFIX), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def prepare(
    root: str,
    prep: Preprocessing,
    *,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    say: Callable[[str], None] = log.info,
) -> PreparedImages:
    """The prepared file of ``root`` under ``prep``: found in the cache, else decoded there once.

    ``out`` writes it there instead of the cache (``gan-ray prepare --out``). Concurrent callers (trials
    starting together) decode it once: a lock file, and the others wait and read it.
    """
    root = canonical_root(root)
    files = open_files(root)
    listing = files.listing()
    key = cache_key(root, listing, prep)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else settings.cache_dir() / "prepared"
    path = Path(out).expanduser() if out is not None else cache / file_name(root, prep, key)
    with file_lock(path.with_name(path.name + ".lock")):
        existing = _read_if_current(path, key)
        if existing is not None:
            say(f"prepared file {path}: {existing.summary()}")
            return existing
        earlier = _earlier(cache, root, prep) if out is None else None
        if earlier is not None:
            say(
                f"data.root {root!r} changed since it was prepared ({_changes_of(earlier, listing)}): decoding it again"
            )
        say(f"decoding {len(listing):,} file(s) of {root!r} once into {path}")
        build(files, listing, prep, path, key)
    prepared = read_prepared(path)
    say(f"prepared {prepared.summary()}")
    return prepared


def _changes_of(earlier: Path, listing: list[FileEntry]) -> str:
    try:
        return changes(read_prepared(earlier).manifest, listing)
    except DatasetNotFoundError:
        return "an unreadable earlier file"


def _read_if_current(path: Path, key: str) -> PreparedImages | None:
    if not path.is_file():
        return None
    try:
        prepared = read_prepared(path)
    except (DatasetNotFoundError, ValueError, OSError):
        return None  # a foreign or truncated file: decode again over it
    return prepared if prepared.manifest.get("key") == key else None


def canonical_root(root: str) -> str:
    """A local root as an absolute path (``~/photos`` and ``/home/me/photos`` are one cache key); a URI as
    it is."""
    if "://" in root:
        return root
    return str(Path(root).expanduser().resolve())


def preprocessing_of(spec: Any) -> Preprocessing:
    """The preprocessing a ``folder`` data spec asks for."""
    from gan_ray.data.catalog import spec_info

    return Preprocessing(spec.image_size, spec_info(spec).channels, spec.labels)


#: (root or prepared file, preprocessing) -> the prepared set this process has read (memory-mapped).
_OPENED: dict[tuple[str, Preprocessing], PreparedImages] = {}


def load_prepared(spec: Any, say: Callable[[str], None] = log.info, fresh: bool = False) -> PreparedImages:
    """The prepared images of a ``folder`` spec: its ``prepared`` file (a path or URI, fetched once into the
    cache), else :func:`prepare` of its ``root``. Read once per process (``fresh``: list the source again,
    as a run's start does, so a source changed since is decoded again), then memory-mapped."""
    prep = preprocessing_of(spec)
    where = spec.prepared or spec.root
    if not fresh and (where, prep) in _OPENED:
        return _OPENED[(where, prep)]
    if spec.prepared is not None:
        prepared = read_prepared(_local_copy(spec.prepared))
        _check_matches(prepared, prep, spec.prepared)
    else:
        prepared = prepare(spec.root, prep, say=say)
    _OPENED[(where, prep)] = prepared
    return prepared


def prepared_path(spec: Any) -> Path:
    """The local prepared file of a ``folder`` spec (made now if it is not in the cache): what a sweep puts
    on its storage and names in every trial's ``data.prepared``."""
    return load_prepared(spec).path


def _local_copy(uri: str) -> Path:
    """``uri`` as a local file: a path as it is; a remote file copied once into the cache (its name holds
    the cache key, so a copy by that name is that file)."""
    if "://" not in uri:
        return Path(uri).expanduser()
    import pyarrow.fs

    local = settings.cache_dir() / "prepared" / uri.rstrip("/").rsplit("/", 1)[-1]
    if not local.is_file():
        local.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(local.with_name(local.name + ".lock")):
            if not local.is_file():
                try:
                    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
                    atomic_write(local, lambda f: _copy_stream(fs, path, f))
                except Exception as err:
                    raise DatasetNotFoundError(f"data.prepared {uri!r}: cannot read it ({err})") from None
    return local


def _copy_stream(fs: Any, path: str, f: IO[bytes]) -> None:
    with fs.open_input_stream(path) as src:
        while chunk := src.read(1 << 24):
            f.write(chunk)


def _check_matches(prepared: PreparedImages, prep: Preprocessing, where: str) -> None:
    made = prepared.manifest.get("preprocessing", {})
    want = prep.as_dict()
    differ = [f"{k} {made.get(k)!r} (config: {want[k]!r})" for k in want if made.get(k) != want[k]]
    if differ:
        raise DatasetNotFoundError(
            f"data.prepared {where!r} was prepared with another "
            + ", ".join(differ)
            + "; prepare it again (gan-ray prepare) or set the config to match"
        )


def check_source(spec: Any) -> None:
    """Cheap checks of a ``folder`` spec's source, before the model is built and anything decoded: it is
    reachable (a folder, a real zip, a bucket that answers) and holds PNG, JPEG or WebP files. One line
    (:class:`DatasetNotFoundError`) where it does not."""
    if spec.prepared is not None:
        _local_copy(spec.prepared)
        return
    files = open_files(canonical_root(spec.root))
    listing = files.listing()
    plan = plan_files(listing, spec.labels)
    if not plan.files:
        raise DatasetNotFoundError(_no_images_message(files.root, listing, plan))


def check_for_run(
    spec: Any, batch_size: int, class_metrics: bool, conditional: bool = False
) -> PreparedImages:
    """The prepared set, or a :class:`~gan_ray.errors.ConfigError` in one line where a run on it cannot
    work: fewer images than one batch, classifier metrics on a set with fewer than two classes, or a
    class-conditional model on a set without class subfolders."""
    from gan_ray.errors import ConfigError

    prepared = load_prepared(spec, say=print, fresh=True)  # a source changed since is decoded again
    where = spec.prepared or spec.root
    count = prepared.images.shape[0]
    if count < batch_size:
        raise ConfigError(
            f"data.root {where!r}: {count} image(s), fewer than one batch (train.batch_size {batch_size})"
        )
    found = f"one class folder ({prepared.classes[0]!r})" if prepared.classes else "no class subfolders"
    if conditional and prepared.num_classes < 2:
        raise ConfigError(
            f"model.conditional true: data.root {where!r} has {found}; a class-conditional model needs 2 "
            "or more (allowed: one subfolder per class, or model.conditional false)"
        )
    if class_metrics and prepared.num_classes < 2:
        raise ConfigError(
            f"data.root {where!r} has {found}: metrics.features 'classifier' trains on 2 or more classes; "
            "put each class in a subfolder of its own, or set metrics.features: inception (its weights on disk)"
        )
    return prepared
