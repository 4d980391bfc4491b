"""The served generator's contract, in one place: the input tensor's name, the largest batch, the
signature, the input example and the settings the pyfunc model checks requests against.

:mod:`gan_ray.tracking.pyfunc_generator` cannot import gan_ray (it serves without it): it reads these
settings from its ``model_config`` and repeats the two names below (a test checks they agree).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from gan_ray.config import GanConfig
from gan_ray.data.sources import data_shape
from gan_ray.noise import get_noise

NOISE = "noise"  # the input tensor's name
PROGRAM = "generator"  # the pyfunc model's artifact: an mlflow.pytorch model holding the pt2 program
EXAMPLE_BATCH = 4  # > 1, or torch.export specialises the batch dimension to a constant
# A request's largest batch: about 2**18 numbers in or out (~5 MB of JSON each way), a power of two.
MAX_REQUEST_VALUES = 2**18


def max_batch(noise_dim: int, sample_shape: tuple[int, ...]) -> int:
    """The most samples one request may ask for: ``MAX_REQUEST_VALUES`` over the larger of a noise
    row and a sample, rounded down to a power of two (ring8: 32768; 28x28 images: 256)."""
    widest = max(noise_dim, math.prod(sample_shape))
    return 2 ** max(0, (MAX_REQUEST_VALUES // widest).bit_length() - 1)


def serving_config(cfg: GanConfig) -> dict[str, Any]:
    """The pyfunc model's ``model_config``: what it checks requests against (it reads no gan_ray config).
    A user may override ``max_batch`` at load time: ``mlflow.pyfunc.load_model(uri, model_config={...})``."""
    shape = data_shape(cfg.data)
    return {
        "noise_dim": cfg.noise_dim,
        "sample_shape": list(shape),
        "max_batch": max_batch(cfg.noise_dim, shape),
        "noise_distribution": cfg.noise.distribution,
    }


def example_noise(cfg: GanConfig, n: int = EXAMPLE_BATCH) -> np.ndarray:
    """``n`` float32 noise rows from the config's distribution (seed 0): the model's input example."""
    g = torch.Generator().manual_seed(0)
    return get_noise(cfg.noise.distribution)(n, cfg.noise_dim, generator=g).numpy().astype(np.float32)


def signature(cfg: GanConfig):
    """Input: one *named* tensor ``noise`` (n, noise_dim) float32, so that a conditional generator adds
    a second named tensor (``labels`` int64 (n,)) without changing what unconditional requests send;
    MLflow wraps a lone ndarray as ``{"noise": array}``. Output: samples (n, *sample_shape) float32."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    f32 = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, cfg.noise_dim), NOISE)]),
        outputs=Schema([TensorSpec(f32, (-1, *data_shape(cfg.data)), "samples")]),
    )
