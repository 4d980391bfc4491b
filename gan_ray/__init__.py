"""gan_ray: train GANs at scale and find the hyperparameters that make them work.

Public API: :func:`train`, :func:`sweep`, :func:`report`, :func:`load_generator`, :func:`export`, :func:`load_config` and
:class:`GanConfig`; the submodules ``losses``, ``noise``, ``metrics``.
Everything is imported on first use, so ``import gan_ray`` (and ``gan-ray --help``) stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["GanConfig", "export", "load_config", "load_generator", "report", "sweep", "train"]

_EXPORTS = {
    "train": "gan_ray.api",
    "sweep": "gan_ray.api",
    "report": "gan_ray.api",
    "load_generator": "gan_ray.api",
    "export": "gan_ray.api",
    "load_config": "gan_ray.config",
    "GanConfig": "gan_ray.config",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gan_ray' has no attribute {name!r}")
