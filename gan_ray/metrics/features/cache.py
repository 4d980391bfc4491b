"""The feature cache: extractors and real-image statistics, kept once on disk and once per process.

Files are written atomically and guarded by a lock file, so trials that start together build a
cached object once while the others wait and load it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gan_ray import settings
from gan_ray.files import atomic_torch_save, file_lock

_MEMO: dict[tuple[str, str], Any] = {}


def default_cache_dir() -> Path:
    """``$GAN_RAY_CACHE`` if set, else ``~/.cache/gan_ray``."""
    return settings.cache_dir()


def clear_memo() -> None:
    """Forget what this process holds in memory (the disk cache stays)."""
    _MEMO.clear()


def try_load(path: Path) -> dict[str, Any] | None:
    """The tensors-and-plain-data file at ``path``, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: rebuild it rather than fail the run
        return None


def cached(
    cache_dir: Path,
    name: str,
    build: Callable[[], dict[str, Any]],
    valid: Callable[[dict[str, Any] | None], bool],
) -> tuple[dict[str, Any], str]:
    """``cache_dir/name``: from memory, else from disk, else ``build()`` (saved for the next caller).

    ``valid`` rejects a file this code cannot use (another architecture, a truncated write).
    Returns (the object, where it came from: ``"memory"``, ``"disk"`` or ``"built"``).
    """
    key = (str(cache_dir.resolve()), name)
    if key in _MEMO:
        return _MEMO[key], "memory"
    path = cache_dir / name
    origin = "disk"
    saved = try_load(path)
    if not valid(saved):
        with file_lock(path.with_name(name + ".lock")):
            saved = try_load(path)  # another process may have built it while we waited
            if not valid(saved):
                origin = "built"
                saved = build()
                atomic_torch_save(saved, path)
    _MEMO[key] = saved
    return saved, origin
