"""The public entry points; the CLI maps one-to-one onto these."""

from __future__ import annotations

from pathlib import Path

from gan_ray.config import GanConfig, load_config
from gan_ray.runner import TrainResult
from gan_ray.runner import train as _train_local


def train(config: GanConfig | str | Path, *, resume: bool = False, verbose: bool = True) -> TrainResult:
    """Train one GAN from a config object or YAML path, in this process."""
    cfg = config if isinstance(config, GanConfig) else load_config(config)
    return _train_local(cfg, resume=resume, verbose=verbose)
