"""How a discriminator scores several batches in one call: each batch apart, never pooled.

The D-step hands D the real and the fake batch in one call, so a DDP-wrapped D runs exactly one
forward per backward; scoring them apart keeps BatchNorm's statistics per batch, so D judges the
fakes of a D-step exactly as it judges the fakes of the G-step (which it scores alone).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def score_apart(
    score: Callable[[Tensor], Tensor], batches: tuple[Tensor, ...]
) -> Tensor | tuple[Tensor, ...]:
    """``score(batch)`` for one batch; a tuple of them, one per batch, for several."""
    if not batches:
        raise TypeError("a discriminator needs at least one batch to score")
    logits = tuple(score(x) for x in batches)
    return logits[0] if len(logits) == 1 else logits
