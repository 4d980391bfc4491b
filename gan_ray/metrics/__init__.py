"""Quality metrics computed at each eval: mode coverage on the 2-D mixtures, a Fréchet distance on images."""

from __future__ import annotations

from gan_ray.metrics.mixture import mode_metrics

__all__ = ["mode_metrics"]
