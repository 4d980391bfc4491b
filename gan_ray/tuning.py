"""Ray Tune + Optuna layer: a sweep is an Optuna study whose trials are Ray Train runs of the GAN loop.

Each trial's driver is a Tune function that builds and fits a TorchTrainer (Ray Train V2 pattern);
``TuneReportCallback`` forwards rank 0's eval reports to Tune, where ASHA may stop the trial early
and OptunaSearch feeds the objective back to the sampler. The study lives in an RDB store (SQLite
by default), so ``resume=True`` adds trials to the latest study of the same sweep.

Trial drivers ask only for the custom resource ``train_driver`` (0.01), never a CPU: on a 2-CPU
machine a driver holding a CPU would leave too few for its own Train workers and the sweep would hang.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gan_ray.cluster import ClusterError, check_fits, cluster_capacity, run_needs
from gan_ray.datasets import check_available
from gan_ray.search_space import SearchSpace, load_search_space

DRIVER_RESOURCE = "train_driver"
DRIVER_SHARE = 0.01


class DivergedTrialError(RuntimeError):
    """A trial whose losses became NaN or infinite: recorded as a failed trial, the sweep goes on."""


@dataclass
class TrialSummary:
    trial_id: str
    status: str  # completed / stopped_early / diverged / failed
    params: dict[str, Any]
    objective: float | None
    best_objective: float | None
    last_step: int | None
    best_checkpoint: str | None
    mlflow_run_id: str | None = None


@dataclass
class SweepResult:
    name: str
    study_name: str
    metric: str
    mode: str
    trials: list[TrialSummary] = field(default_factory=list)
    best: TrialSummary | None = None
    experiment_path: str | None = None
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    promoted: bool = False
    stratify: str | None = None


def default_study_storage() -> str:
    """``$GAN_RAY_OPTUNA_STORAGE``, else ``sqlite:///<cwd>/optuna.db``."""
    return os.environ.get("GAN_RAY_OPTUNA_STORAGE") or f"sqlite:///{Path('optuna.db').resolve()}"


def study_name_for(space_name: str, storage_url: str, resume: bool) -> str:
    """A new ``NAME-YYYYmmdd-HHMMSS`` study, or with ``resume`` the latest study of this sweep."""
    if resume:
        import optuna

        names = [
            s.study_name
            for s in optuna.get_all_study_summaries(storage=storage_url)
            if s.study_name == space_name or s.study_name.startswith(space_name + "-")
        ]
        if names:
            return sorted(names)[-1]
    return f"{space_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _searcher_class():
    from ray.tune.search.optuna import OptunaSearch

    class FailingNonFiniteOptunaSearch(OptunaSearch):
        """OptunaSearch that records a trial whose final objective is NaN/inf (a diverged GAN) as FAIL.

        The stock class tells Optuna the NaN as a COMPLETE value; Optuna rejects it and the trial
        stays RUNNING in the study for ever, where TPE keeps treating it as pending.
        """

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            value = (result or {}).get(self.metric)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                result, error = {k: v for k, v in result.items() if k != self.metric}, True
            super().on_trial_complete(trial_id, result, error)

    return FailingNonFiniteOptunaSearch


def _sampler(space: SearchSpace):
    import optuna

    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=space.seed)
    # Multivariate TPE models the interactions (lr_g with lr_d, the loss with its parameters).
    return optuna.samplers.TPESampler(seed=space.seed, multivariate=True, group=True, n_startup_trials=5)


def run_trial(params: dict[str, Any], space: SearchSpace, study_name: str, storage_path: str) -> None:
    """A Tune trial: one Ray Train run of the config that ``params`` (sampled by Optuna) describe."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from gan_ray.distributed import make_trainer

    cfg = space.trial_config(space.resolve(params))
    trial_id = tune.get_context().get_trial_id()
    trainer = make_trainer(
        cfg,
        name=f"{study_name}-{trial_id}",
        storage_path=storage_path,
        callbacks=[TuneReportCallback()],
        objective=(space.metric, space.mode),
    )
    result = trainer.fit()
    metrics = result.metrics or {}
    if metrics.get("diverged"):
        raise DivergedTrialError(f"trial {trial_id} diverged by step {metrics.get('step')}")


def ensure_ray_for_sweep() -> None:
    """Connect to ``$RAY_ADDRESS`` or start a local Ray that offers the trial-driver resource."""
    import ray

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(resources={DRIVER_RESOURCE: 100})
    if ray.cluster_resources().get(DRIVER_RESOURCE, 0) <= 0:
        raise ClusterError(
            f"the Ray cluster offers no {DRIVER_RESOURCE!r} resource for trial drivers; start the head with "
            f"--resources='{{\"{DRIVER_RESOURCE}\": 100}}' (cluster.yaml does)"
        )


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


def check_storage(storage_path: str) -> None:
    """Refuse a local storage path when workers may run on other nodes: they could not write to it."""
    import ray

    if "://" in storage_path:
        return
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and not os.environ.get("GAN_RAY_SHARED_FS"):
        raise ClusterError(
            f"storage path {storage_path!r} is local to this node, but the cluster has {len(alive)} nodes; "
            "set GAN_RAY_STORAGE (or --storage-path) to s3://BUCKET/PREFIX or a shared filesystem mounted "
            "on every node (then also set GAN_RAY_SHARED_FS=1)"
        )


def _summaries(tracker, space: SearchSpace) -> list[TrialSummary]:
    better = min if space.mode == "min" else max
    out = []
    for record in tracker.trials.values():
        scored = [h for h in record.history if h.get("objective") is not None and not h.get("diverged")]
        scored = [h for h in scored if math.isfinite(float(h["objective"]))]
        best = better(scored, key=lambda h: float(h["objective"])) if scored else None
        with_ckpt = [h for h in scored if h.get("checkpoint_path")]
        best_ckpt = better(with_ckpt, key=lambda h: float(h["objective"])) if with_ckpt else None
        last = record.history[-1] if record.history else {}
        out.append(
            TrialSummary(
                trial_id=record.trial_id,
                status=record.status,
                params=record.params,
                objective=float(last["objective"]) if "objective" in last else None,
                best_objective=float(best["objective"]) if best else None,
                last_step=int(last["step"]) if "step" in last else None,
                best_checkpoint=best_ckpt["checkpoint_path"] if best_ckpt else None,
                mlflow_run_id=record.run_id,
            )
        )
    return out


def _register_best(result: SweepResult, space: SearchSpace, model_name: str | None) -> None:
    from gan_ray.ray_tracking import log_checkpoint_generator
    from gan_ray.registry import default_model_name, register_champion

    best = result.best
    assert best is not None and best.best_checkpoint is not None and best.best_objective is not None
    cfg = space.trial_config(space.resolve(best.params))
    model_uri = log_checkpoint_generator(result.tracking_uri, best.mlflow_run_id, best.best_checkpoint, cfg)
    result.model_name = model_name or default_model_name(space.name)
    version, promoted = register_champion(
        model_uri,
        result.model_name,
        space.metric,
        best.best_objective,
        space.mode,
        best.mlflow_run_id,
        cfg,
        result.tracking_uri,
    )
    result.model_version, result.promoted = str(version), promoted


def sweep(
    space: SearchSpace | str | Path,
    *,
    num_samples: int | None = None,
    resume: bool = False,
    tracking_uri: str | None = None,
    storage_path: str | None = None,
    study_storage: str | None = None,
    model_name: str | None = None,
    register: bool = True,
    verbose: int = 1,
) -> SweepResult:
    """Run the sweep ``space`` (a :class:`SearchSpace` or a YAML path) and register its best generator.

    Everything that can be checked is checked before Ray starts: the search space, the dataset,
    the MLflow tracking store. Diverged trials end as failed trials; the sweep goes on.
    """
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from gan_ray.distributed import default_storage_path
    from gan_ray.ray_tracking import SweepTracker
    from gan_ray.tracking import check_tracking_server, resolve_tracking_uri

    if not isinstance(space, SearchSpace):
        space = load_search_space(space)
    if num_samples is not None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        space = dataclasses.replace(space, budget=dataclasses.replace(space.budget, num_samples=num_samples))
    check_available(space.base.data)
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_server(uri)
    study_url = study_storage or default_study_storage()
    study_name = study_name_for(space.name, study_url, resume)

    ensure_ray_for_sweep()
    capacity = cluster_capacity()
    check_fits(space.base.scaling, capacity, f"search space {space.name!r}")
    storage_path = storage_path or space.base.scaling.storage_path or default_storage_path()
    check_storage(storage_path)
    tracker = SweepTracker(uri, space, study_name)
    result = SweepResult(
        space.name, study_name, space.metric, space.mode, tracking_uri=uri, stratify=space.stratify
    )
    result.parent_run_id = tracker.parent_run_id

    if space.stratify:
        done = len(optuna.load_study(study_name=study_name, storage=study_url).trials) if resume else 0
        points = space.stratified_points(seed_offset=done)
    elif resume:
        points = []  # a resumed study already evaluated them
    else:
        points = [dict(p) for p in space.initial_points][: space.budget.num_samples]
    searcher = _searcher_class()(
        space=space.define_by_run,
        metric="objective",
        mode=space.mode,
        sampler=_sampler(space),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(study_url),
        points_to_evaluate=points or None,
    )
    steps, every = space.base.train.steps, space.base.train.eval_every
    if space.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="step",
            max_t=steps,
            grace_period=min(steps, space.grace_period * every),
            reduction_factor=space.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, space=space, study_name=study_name, storage_path=storage_path),
        {DRIVER_RESOURCE: DRIVER_SHARE},
    )
    concurrency = max_concurrent(space, capacity)
    if verbose:
        print(f"gan_ray: {concurrency_note(space, capacity, concurrency)}", file=sys.stderr, flush=True)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=len(points) if space.stratify else space.budget.num_samples,
            max_concurrent_trials=concurrency,
            metric="objective",
            mode=space.mode,
        ),
        run_config=tune.RunConfig(
            name=f"{study_name}-tune-{time.strftime('%H%M%S')}",
            storage_path=storage_path,
            callbacks=[tracker],
            verbose=verbose,
        ),
    )
    status = "FAILED"
    try:
        grid = tuner.fit()
        result.experiment_path = grid.experiment_path
        result.trials = _summaries(tracker, space)
        result.best = _best_of(result.trials, space.mode)
        if register and result.best is not None and result.best.best_checkpoint:
            _register_best(result, space, model_name)
        status = "FINISHED"
    finally:
        rows = [
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "objective": t.objective,
                "best_objective": t.best_objective,
                "last_step": t.last_step,
                "mlflow_run_id": t.mlflow_run_id,
                **t.params,
            }
            for t in (result.trials or _summaries(tracker, space))
        ]
        tracker.finish(rows, result.best, status)
    if verbose:
        print(format_summary(result), file=sys.stderr, flush=True)
    return result


def _best_of(trials: list[TrialSummary], mode: str) -> TrialSummary | None:
    """The trial with the best objective over its evals, among those that neither diverged nor failed."""
    ok = [t for t in trials if t.best_objective is not None and t.status not in ("diverged", "failed")]
    if not ok:
        return None
    return (min if mode == "min" else max)(ok, key=lambda t: t.best_objective)


def _best_per(result: SweepResult, key: str) -> dict[Any, TrialSummary]:
    groups: dict[Any, list[TrialSummary]] = {}
    for t in result.trials:
        groups.setdefault(t.params.get(key), []).append(t)
    best = {value: _best_of(ts, result.mode) for value, ts in groups.items()}
    return {value: t for value, t in best.items() if t is not None}


def format_summary(result: SweepResult) -> str:
    counts: dict[str, int] = {}
    for t in result.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    lines = [f"sweep {result.name}: study {result.study_name}, {len(result.trials)} trials {counts}"]
    if result.best is None:
        lines.append("no trial produced a finite objective")
        return "\n".join(lines)
    b = result.best
    lines.append(f"best trial {b.trial_id}: {result.metric} = {b.best_objective:.4g} ({result.mode})")
    for key, value in b.params.items():
        lines.append(f"  {key}: {value}")
    lines.append(f"  checkpoint: {b.best_checkpoint}")
    lines.append(f"  mlflow: {result.tracking_uri} run {b.mlflow_run_id} (parent {result.parent_run_id})")
    if result.stratify:
        lines.append(f"best per {result.stratify}:")
        for value, t in _best_per(result, result.stratify).items():
            lines.append(f"  {value}: {result.metric} = {t.best_objective:.4g} (trial {t.trial_id})")
    if result.model_name:
        state = "now the champion" if result.promoted else "registered; the champion stays (it is better)"
        lines.append(
            f"  model: models:/{result.model_name}/{result.model_version} ({state}); load models:/{result.model_name}@champion"
        )
    return "\n".join(lines)
