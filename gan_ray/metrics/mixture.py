"""Mode coverage and quality on the 2-D mixtures: the protocol of VEEGAN (Srivastava et al. 2017) and
PacGAN (Lin et al. 2018).

A generated sample is *high quality* when it lies within 3 standard deviations of its nearest mode;
a mode is *covered* when it is the nearest mode of at least one high-quality sample; the *reverse KL*
is KL(p_gen || uniform) between the histogram of high-quality samples over modes and the uniform one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gan_ray.data.mixtures import mixture


@torch.no_grad()
def mode_metrics(samples: Tensor, dataset_name: str) -> dict[str, float]:
    """``modes_covered``, ``high_quality_fraction``, ``reverse_kl`` and ``mode_distance`` of 2-D samples.

    ``mode_distance`` (the search objective, minimised) is the total variation distance between the
    generated histogram over {modes + "no mode"} and the target (uniform over modes, nothing off-mode):
    0 when every sample is high quality and the modes are hit evenly, 1 when no sample is high quality.
    Unlike reverse KL alone it cannot be gamed by a generator whose few good samples are evenly spread.
    """
    mix = mixture(dataset_name)
    samples = samples.detach().float().reshape(-1, 2).cpu()
    n, m = samples.shape[0], mix.modes.shape[0]
    if n == 0:
        raise ValueError("mode_metrics needs at least one sample")
    finite = torch.isfinite(samples).all(dim=1)
    dist = torch.cdist(samples[finite], mix.modes)
    nearest_dist, nearest = (
        dist.min(dim=1) if dist.numel() else (torch.empty(0), torch.empty(0, dtype=torch.long))
    )
    high_quality = nearest_dist <= 3 * mix.std
    counts = torch.bincount(nearest[high_quality], minlength=m).double()
    hq = int(counts.sum().item())
    covered = int((counts > 0).sum().item())
    if hq > 0:
        p = counts / hq
        nz = p > 0
        reverse_kl = float((p[nz] * (p[nz] * m).log()).sum())
    else:
        reverse_kl = math.log(m)  # as bad as putting everything on one mode
    p_full = counts / n
    mode_distance = 0.5 * float((p_full - 1.0 / m).abs().sum() + (n - hq) / n)
    return {
        "modes_covered": float(covered),
        "high_quality_fraction": hq / n,
        "reverse_kl": reverse_kl,
        "mode_distance": mode_distance,
    }
