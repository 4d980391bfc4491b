"""Whether a run is still a game: at every eval, ``"ok"`` or the first sign that it stopped being one.

A pure function of the eval's metrics, the previous eval's, and the eval samples (this eval's and the
previous one's); the loop adds its verdict to every report as ``health``. No Ray, no MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

HEALTHY = "ok"
#: D has won: it tells real from fake almost perfectly, at two evals in a row.
D_WON = "d_won"
#: G has stopped moving: the eval samples (from the fixed eval noise) are those of the previous eval.
G_STALLED = "g_stalled"
#: G's samples do not vary across the batch: every noise vector maps to (almost) the same point.
NO_VARIANCE = "no_variance"

# A D whose mean probability is at least D_WON_REAL on the real data and at most D_WON_FAKE on the fakes
# has won the game: the minimax G's loss log(1 - D(G(z))) is flat there, and a G facing so sure a D
# rarely comes back. A game being played sits near D(x) 0.5-0.8; one eval this close can be a passing
# spike, two evals in a row (a whole eval interval's mean each) is a D that has won.
D_WON_REAL = 0.99
D_WON_FAKE = 0.01

# Largest change of any eval sample over the interval, relative to the samples' largest magnitude, that
# still counts as "not moved": under one fp32 rounding (eps 1.2e-7) of the largest sample. A G that did
# not move at all (lr 0, zero gradients) gives bit-identical samples from the same eval noise; a G that
# a learning-rate schedule decays towards 0 still moves by far more over a whole interval (7.6e-6 at
# the last of 50 intervals of a cosine decay to 0 from lr_g 1e-4, the smallest seen; the default
# configs move 1e-3 and more: tests/training/test_health.py).
G_STALLED_RTOL = 1e-7

# Mean over coordinates (pixels) of the samples' std across the batch below which G's output is one
# point. Far below a G collapsed onto one Gaussian mode of ring8 / grid25 (std 0.01 / 0.05 per
# coordinate: the mode metrics catch that one), and below any real image set's pixel spread.
NO_VARIANCE_STD = 1e-4


def d_has_won(metrics: Mapping[str, Any], previous: Mapping[str, Any] | None) -> bool:
    """D(x) >= :data:`D_WON_REAL` and D(G(z)) <= :data:`D_WON_FAKE` at this eval and the previous one.

    Only meaningful where D's outputs are probabilities (``GanLoss.has_probabilities``)."""
    return all(
        evals is not None
        and _number(evals.get("d_real")) >= D_WON_REAL
        and _number(evals.get("d_fake"), default=1.0) <= D_WON_FAKE
        for evals in (metrics, previous)
    )


def g_has_stalled(samples: Tensor, previous_samples: Tensor | None) -> bool:
    """This eval's samples equal the previous eval's within :data:`G_STALLED_RTOL` of their scale."""
    if previous_samples is None or previous_samples.shape != samples.shape:
        return False
    change = (samples.float() - previous_samples.to(samples.device).float()).abs().max()
    scale = samples.float().abs().max()
    return bool(change <= G_STALLED_RTOL * scale)


def sample_spread(samples: Tensor) -> float:
    """The mean over coordinates of the samples' standard deviation across the batch."""
    flat = samples.detach().float().reshape(samples.shape[0], -1)
    return float(flat.std(dim=0).mean()) if flat.shape[0] > 1 else float("nan")


def health(
    metrics: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    samples: Tensor,
    previous_samples: Tensor | None,
    *,
    has_probabilities: bool,
) -> str:
    """``"ok"``, or the first sign found of a run that no longer learns: :data:`D_WON` (losses whose D
    outputs probabilities only: ``metrics``' ``d_real``/``d_fake`` are then mean sigmoid(D)),
    :data:`G_STALLED`, :data:`NO_VARIANCE`.

    ``previous`` is the previous eval's metrics and ``previous_samples`` its samples (None at a run's, or
    a resumed run's, first eval). Under torch.distributed every rank passes the same all-reduced
    metrics and the samples of its replica of G (the same weights, see DDP) from the same noise, so
    all of them reach the same verdict without a collective. (A G with BatchNorm is the exception at a
    threshold's very edge: each rank updates its running statistics from its own batches. The verdict
    steers nothing but the record, which is rank 0's, so no rank can be left waiting on another.)
    """
    if has_probabilities and d_has_won(metrics, previous):
        return D_WON
    with torch.no_grad():
        if g_has_stalled(samples, previous_samples):
            return G_STALLED
        if sample_spread(samples) < NO_VARIANCE_STD:
            return NO_VARIANCE
    return HEALTHY


def explain(verdict: str, metrics: Mapping[str, Any]) -> str:
    """What ``verdict`` means, in words, for a person reading a console line or a run's Description."""
    if verdict == D_WON:
        return (
            f"D has won (D(x) {_number(metrics.get('d_real')):.4f}, "
            f"D(G(z)) {_number(metrics.get('d_fake')):.4f} at two evals in a row)"
        )
    if verdict == G_STALLED:
        return "G has stopped moving (its eval samples are those of the previous eval)"
    if verdict == NO_VARIANCE:
        return "G's samples do not vary (every noise vector gives the same output)"
    return "healthy" if verdict == HEALTHY else verdict


def turned_bad(before: str, metrics: Mapping[str, Any]) -> bool:
    """Whether this eval's health (``metrics['health']``) is a new bad verdict after ``before``."""
    return str(metrics.get("health", HEALTHY)) not in (HEALTHY, before)


def health_warning(run: str, step: int, metrics: Mapping[str, Any], *, ended: bool) -> str:
    """The one console line about a run whose ``metrics['health']`` is not ok: at the eval where it
    turned bad (``ended`` False), or at the end of a run that ends collapsed."""
    verdict = str(metrics.get("health", HEALTHY))
    state = "collapsed" if ended else f"is unhealthy ({verdict})"
    return f"gan_ray: warning: {run} {state} at step {step}: {explain(verdict, metrics)}"


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
