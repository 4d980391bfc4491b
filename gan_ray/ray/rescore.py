"""The champion chosen above the noise floor of a training eval: the best few trials' best checkpoints
scored again on many samples, with the sweep's feature extractor."""

from __future__ import annotations

import sys

from gan_ray.ray.storage import local_file
from gan_ray.ray.train import checkpoint_folder
from gan_ray.search.space import SearchSpace
from gan_ray.search.trials import TrialSummary
from gan_ray.training.evaluation import evaluate_checkpoint
from gan_ray.training.observers import USABLE


def rescore_best(trials: list[TrialSummary], space: SearchSpace, verbose: int = 0) -> None:
    """Score the best checkpoints of the ``space.final_top`` best of ``trials`` again on
    ``space.final_samples`` samples (with the sweep's feature extractor), so the champion is chosen
    above the noise floor of a training eval."""
    usable = [t for t in trials if t.status in USABLE and t.best_checkpoint and t.best_objective is not None]
    ranked = sorted(usable, key=lambda t: t.best_objective, reverse=space.objective.mode == "max")
    candidates = ranked[: space.final_top]
    if not candidates:
        return
    if verbose:
        print(
            f"gan_ray: scoring the best {len(candidates)} trial(s) again on {space.final_samples} samples",
            file=sys.stderr,
            flush=True,
        )
    with local_file(space.base.metrics.extractor) as extractor:
        for t in candidates:
            with checkpoint_folder(t.best_checkpoint) as folder:
                metrics = evaluate_checkpoint(folder, space.final_samples, extractor)
            value = metrics.get(space.objective.metric)
            t.final_objective = float(value) if isinstance(value, (int, float)) else None
            t.final_samples = space.final_samples
