"""The model card of a registered generator version (its description in the MLflow UI): the data, the
score and how it was measured, the training budget and searched values, and how to call the model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gan_ray.config import GanConfig
from gan_ray.data.sources import data_shape
from gan_ray.objective import Mode
from gan_ray.tracking.contract import NOISE, example_noise, serving_config
from gan_ray.tracking.store import TAG_DATASET, TAG_EVAL_SAMPLES, TAG_FEATURE_EXTRACTOR

SERVE_PORT = 5001  # the card's examples (5000 is the MLflow UI's)

# One numpy line drawing n x d noise as gan_ray's samplers do (gan_ray.noise), for the card's examples.
NUMPY_NOISE = {
    "normal": "np.random.default_rng(0).standard_normal(({n}, {d}), dtype=np.float32)",
    "uniform": "np.random.default_rng(0).uniform(-1, 1, ({n}, {d})).astype(np.float32)",
    "bernoulli": "np.random.default_rng(0).choice(np.float32([-1, 1]), ({n}, {d}))",
    "hypersphere": "(lambda z: z * np.float32({d} ** 0.5) / np.linalg.norm(z, axis=1, keepdims=True))("
    "np.random.default_rng(0).standard_normal(({n}, {d}), dtype=np.float32))",
    # scipy comes with mlflow
    "truncated_normal": "scipy.stats.truncnorm.rvs(-2, 2, size=({n}, {d}), random_state=0).astype(np.float32)",
}
NOISE_WORDS = {
    "normal": "standard normal N(0, I)",
    "uniform": "uniform on [-1, 1]^d",
    "bernoulli": "each coordinate -1 or +1 with probability 1/2",
    "hypersphere": "uniform on the sphere of radius sqrt(d)",
    "truncated_normal": "N(0, I) truncated to [-2, 2] per coordinate",
}


def _score(metric: str, value: float, mode: Mode, scoring: Mapping[str, str]) -> list[str]:
    better = "lower" if mode == "min" else "higher"
    measured = (
        f"on {int(scoring[TAG_EVAL_SAMPLES]):,} generated samples" if TAG_EVAL_SAMPLES in scoring else ""
    )
    extractor = scoring.get(TAG_FEATURE_EXTRACTOR)
    features = f", features from extractor `{extractor}`" if extractor else " (no feature extractor)"
    return [
        f"- **Objective**: `{metric}` = **{value:.4g}** ({better} is better), measured {measured}{features} "
        f"against the real `{scoring.get(TAG_DATASET, '?')}` data.",
    ]


def _training(cfg: GanConfig, searched: Mapping[str, Any] | None) -> list[str]:
    t, k, workers = cfg.train, cfg.d_steps_per_g_step, cfg.scaling.num_workers
    lines = [
        f"- **Data**: `{cfg.data.name}`, one sample of shape {tuple(data_shape(cfg.data))}.",
        f"- **Model**: {cfg.model_name} generator, `{cfg.loss.name}` loss, "
        f"noise `{cfg.noise.distribution}` of dimension {cfg.noise_dim}"
        + (f", EMA of G's weights (decay {t.ema_decay})" if t.ema_decay else "")
        + ".",
        f"- **Training budget**: {t.steps:,} G-steps, each after {k} D-step(s), batch {t.batch_size} x "
        f"{workers} worker(s): {t.steps * k * t.batch_size * workers:,} real samples shown to D; evaluated "
        f"every {t.eval_every:,} steps on {t.eval_samples:,} samples.",
    ]
    if searched:
        lines += [
            "",
            "Searched parameters and this version's values:",
            "",
            "| parameter | value |",
            "|---|---|",
        ]
        lines += [f"| `{k}` | `{v}` |" for k, v in sorted(searched.items())]
    return lines


def _contract(cfg: GanConfig, model_uri: str) -> list[str]:
    serving = serving_config(cfg)
    d, shape, most = cfg.noise_dim, tuple(serving["sample_shape"]), serving["max_batch"]
    words = NOISE_WORDS.get(cfg.noise.distribution, f"`{cfg.noise.distribution}` (gan_ray's sampler)")
    draw = NUMPY_NOISE.get(cfg.noise.distribution, NUMPY_NOISE["normal"]).format(n=16, d=d)
    rows = [[round(float(x), 3) for x in row] for row in example_noise(cfg, 2)]
    body = json.dumps({"inputs": {NOISE: rows}})
    return [
        f"- **Input**: `{NOISE}`, float32 of shape (n, {d}), 1 <= n <= {most:,}, finite, drawn from the "
        f"distribution G was trained on: {words}. A plain (n, {d}) array or list of rows is taken too.",
        f"- **Output**: float32 samples of shape (n, {', '.join(map(str, shape))}) in data space, as "
        "`gan-ray sample` draws them"
        + (" (images in [-1, 1], channels first)." if len(shape) == 3 else " (points of the plane)."),
        "- **Bad input** (another width, NaN, an empty or too large batch) is refused with HTTP 400 and a "
        "message naming the expected shape. Nothing of gan_ray is needed: numpy, torch and mlflow.",
        "",
        "In Python (pyfunc):",
        "",
        "```python",
        "import mlflow, numpy as np" + (", scipy.stats" if "scipy" in draw else ""),
        f"noise = {draw}",
        f'samples = mlflow.pyfunc.load_model("{model_uri}").predict(noise)',
        "```",
        "",
        "Served (the scoring server; `mlflow models build-docker -m ...` builds the same server as an image):",
        "",
        "```bash",
        f"mlflow models serve -m {model_uri} --env-manager local -p {SERVE_PORT}",
        f"curl -s 127.0.0.1:{SERVE_PORT}/invocations -H 'Content-Type: application/json' -d '{body}'",
        "```",
        "",
        'It answers `{"predictions": [...]}`, one sample per noise row.',
    ]


def model_card(
    *,
    summary: str,
    model_uri: str,
    metric: str,
    value: float,
    mode: Mode,
    scoring: Mapping[str, str],
    config: GanConfig,
    searched: Mapping[str, Any] | None = None,
) -> str:
    """The card (markdown): ``summary`` on the first line, then the score, training and contract sections."""
    lines = [summary, "", "### Score", "", *_score(metric, value, mode, scoring)]
    lines += ["", "### Training", "", *_training(config, searched)]
    lines += ["", "### Using it", "", *_contract(config, model_uri)]
    return "\n".join(lines) + "\n"
