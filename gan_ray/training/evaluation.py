"""Scoring a saved generator afresh, on more samples than a training eval draws.

A sweep chooses its champion this way among its best few trials: at 2,500 samples ``mode_distance``
has a noise floor (perfect samples from the data themselves score ~0.03 on ring8) that a difference
between two good trials drowns in; at 20,000 the floor is ~0.01.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gan_ray.config import validate_config
from gan_ray.noise import get_noise
from gan_ray.training.checkpoint import generator_weights, load_checkpoint
from gan_ray.training.loop import default_evaluator
from gan_ray.training.networks import generator_from_state

CHUNK = 4096  # samples per forward pass
SEED = 20_000  # the rescoring noise: the same for every candidate, apart from the training evals'


@torch.no_grad()
def evaluate_checkpoint(
    folder: str | Path,
    samples: int,
    extractor_file: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float | str]:
    """The quality metrics of a run-state folder's generator (its EMA where it kept one) on ``samples``
    samples from a fixed noise, as its training evals would compute them."""
    state = load_checkpoint(folder)
    cfg = validate_config(state["config"])
    device = torch.device(device)
    generator = generator_from_state(cfg, generator_weights(state)).to(device)
    z = get_noise(cfg.noise.distribution)(
        samples, cfg.noise_dim, generator=torch.Generator().manual_seed(SEED)
    )
    x = torch.cat([generator(chunk.to(device)).float() for chunk in z.split(CHUNK)])
    if not torch.isfinite(x).all():
        return {cfg.objective.metric: float("nan")}
    return default_evaluator(cfg, device, extractor_file)(x)
