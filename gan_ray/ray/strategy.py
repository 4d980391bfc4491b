"""How a sweep's trials are proposed, stopped or replaced, and how many run at once: OptunaSearch with
ASHA (or no scheduler), or population-based training; and how Tune keeps a trial's checkpoints."""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search import ConcurrencyLimiter

from gan_ray.ray.cluster import cluster_capacity, run_needs
from gan_ray.ray.ledger import TrialLedger
from gan_ray.ray.progress import warn
from gan_ray.ray.search import fail_trial, first_points, make_searcher, trials_in_study
from gan_ray.search.space import SearchSpace
from gan_ray.training.observers import FINISHED

#: What ASHA and Optuna rank trials by: each trial's best objective so far, the number its champion
#: candidate (its best checkpoint) is chosen by, also for trials ASHA stopped early.
RANKED_BY = "best_objective"


def max_concurrent(space: SearchSpace, resources: dict[str, float] | None = None) -> int:
    """Trials at once: the budget's value, else what ``resources`` (default: :func:`cluster_capacity`)
    fit, by GPUs where trials take GPUs, else by CPUs."""
    if space.budget.max_concurrent_trials:
        return space.budget.max_concurrent_trials
    if resources is None:
        resources = cluster_capacity()
    key, per_trial = _limiting_resource(space)
    return max(1, int(math.floor(resources.get(key, 0.0) / per_trial + 1e-9)))


def _limiting_resource(space: SearchSpace) -> tuple[str, float]:
    """The resource that bounds how many trials fit (GPU where trials take GPUs), and one trial's share."""
    need = run_needs(space.base.scaling)
    key = "GPU" if "GPU" in need else "CPU"
    return key, need[key]


def concurrency_note(space: SearchSpace, capacity: dict[str, float], concurrency: int) -> str:
    """One line on how many trials run at once, and what decided it."""
    b = space.budget
    if b.max_concurrent_trials:
        why = "budget.max_concurrent_trials"
    else:
        key, per_trial = _limiting_resource(space)
        why = (
            f"{capacity.get(key, 0):g} {key}s the cluster has or may scale to, "
            f"{per_trial / b.workers_per_trial:g} per worker"
        )
    return f"up to {concurrency} trial(s) at once ({why}, {b.workers_per_trial} worker(s) per trial)"


def own_process_checkpoints(space: SearchSpace) -> dict[str, Any]:
    """What Ray Train's run config gives a Train trial, for a trial Tune itself keeps: restarts from the
    latest checkpoint after a crash, and the best checkpoint by the objective kept beside the latest.
    Under PBT every checkpoint is kept: another trial may clone one after its owner has moved on."""
    from ray import tune

    keep = None if space.scheduler == "pbt" else 1
    return {
        "failure_config": tune.FailureConfig(max_failures=space.base.scaling.max_failures),
        "checkpoint_config": tune.CheckpointConfig(
            num_to_keep=keep,
            checkpoint_score_attribute="objective",
            checkpoint_score_order=space.objective.mode,
        ),
    }


class SearchStrategy:
    """Who proposes a sweep's trials and who stops or replaces them: OptunaSearch with ASHA (or none), or
    PBT over a population drawn into the study beforehand (Tune allows no search algorithm beside PBT)."""

    def __init__(
        self,
        space: SearchSpace,
        study_name: str,
        study_url: str,
        resume: bool,
        ledger: TrialLedger,
        concurrency: int,
    ):
        self.space, self.study_name, self.study_url = space, study_name, study_url
        self.members: list[dict[str, Any]] = []
        self.offset = 0
        if space.scheduler == "pbt":
            from ray.tune.search import BasicVariantGenerator

            from gan_ray.ray.pbt import draw_population, make_pbt

            self.offset = trials_in_study(study_name, study_url) if resume else 0
            self.members = draw_population(space, study_name, study_url, seed_offset=self.offset)
            self.searcher = BasicVariantGenerator(
                points_to_evaluate=[dict(m) for m in self.members], max_concurrent=concurrency
            )
            # Tune sets a point's keys only where the space has them; a key a member leaves out (a
            # parameter whose condition does not hold) stays None there, which resolve() skips.
            self.param_space = {key: None for m in self.members for key in m}
            self.scheduler = make_pbt(space, ledger.on_exploit)
            self.num_samples = len(self.members)
            self.max_concurrent = None  # the generator limits it: Tune's own limit takes only a Searcher
            # PBT ranks by the latest objective itself; the sweep's ranking is the ledger's.
            self.metric = self.mode = None
            return
        points = first_points(space, study_name, study_url, resume)
        self.param_space: dict[str, Any] = {}
        # Tune's max_concurrent_trials would wrap the searcher in a limiter of its own, out of reach: a
        # trial Tune aborts before it starts (no callback hears of it) would hold its place for ever,
        # and at 1 trial at a time the sweep would wait for ever. This one, fail() frees.
        self.searcher = ConcurrencyLimiter(
            make_searcher(space, study_name, study_url, points, RANKED_BY), max_concurrent=concurrency
        )
        self.scheduler = scheduler_for(space)
        self.num_samples = len(points) if space.stratify else space.budget.num_samples
        self.metric, self.mode = RANKED_BY, space.objective.mode
        self.max_concurrent = None  # the limiter's

    def fail(self, trial_id: str, why: str = "the sweep was interrupted") -> None:
        if self.space.scheduler != "pbt":
            fail_trial(self.searcher, trial_id, why)

    def finish(self, ledger: TrialLedger) -> None:
        """PBT: tell the study each member's best objective (the study holds the initial population)."""
        if self.space.scheduler != "pbt":
            return
        try:
            self._tell_population(ledger)
        except Exception as err:  # the study is the report's; the trials and the champion stand without it
            warn(f"gan_ray: warning: study {self.study_name} was not told the population's values: {err}")

    def _tell_population(self, ledger: TrialLedger) -> None:
        from gan_ray.ray.pbt import tell_population

        by_start = {tuple(sorted(r.initial_params.items())): r for r in ledger.trials.values()}
        values = []
        for member in self.members:
            record = by_start.get(tuple(sorted(self.space.resolve(member).items())))
            summary = record.summary(self.space) if record is not None else None
            values.append(summary.best_objective if summary and summary.status in FINISHED else None)
        tell_population(self.study_name, self.study_url, self.members, values, self.offset)


def scheduler_for(space: SearchSpace):
    """ASHA over the trials' steps (its grace period in evals), or none: Tune's FIFO runs every trial out."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler != "asha":
        return FIFOScheduler()
    steps, every = space.base.train.steps, space.base.train.eval_every
    return ASHAScheduler(
        time_attr="step",
        max_t=steps,
        grace_period=min(steps, space.grace_period * every),
        reduction_factor=space.reduction_factor,
    )
