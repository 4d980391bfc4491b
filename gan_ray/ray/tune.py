"""Ray Tune layer: a sweep is an Optuna study whose trials are runs of the GAN loop.

A single-worker trial trains in its Tune trial's own process (:class:`~gan_ray.ray.worker.TuneSession`):
Tune keeps its checkpoints, restarts it from the latest one after a crash (``scaling.max_failures``)
and reuses the process for the next trial, so a short trial pays no start-up of its own. A trial of
several workers is a Ray Train run: its Tune function builds and fits a TorchTrainer (Ray Train V2
pattern), and ``TuneReportCallback`` forwards rank 0's eval reports to Tune. Either way ASHA may stop
the trial early and OptunaSearch feeds the objective back to the sampler. :class:`TrialLedger`, a Tune
callback in the driver, keeps every trial's history and decides its status; a recorder (MLflow, when
tracking is on) hears of every trial through it, but the sweep needs none.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, DEBUG_METRICS, SHOULD_CHECKPOINT

from gan_ray import settings
from gan_ray.errors import DivergedError
from gan_ray.ray.cluster import (
    DRIVER_RESOURCE,
    DRIVER_SHARE,
    check_fits,
    check_storage,
    cluster_capacity,
    connect,
    logs_dir,
    require_driver_resource,
    run_needs,
)
from gan_ray.ray.progress import SweepProgress
from gan_ray.ray.search import fail_trial, first_points, make_searcher, trials_in_study
from gan_ray.ray.storage import local_file
from gan_ray.ray.study import read_study
from gan_ray.ray.train import checkpoint_exists, checkpoint_folder, make_trainer
from gan_ray.ray.worker import TuneSession
from gan_ray.search_space import SearchSpace
from gan_ray.training.driver import loop_config, run_worker
from gan_ray.training.evaluation import evaluate_checkpoint
from gan_ray.training.health import health_warning, turned_bad
from gan_ray.training.observers import (
    CHECKPOINT_PATH,
    FINISHED,
    USABLE,
    EvalRecord,
    RunObserver,
    RunOutcome,
    RunStatus,
    final_status,
    last_health,
)
from gan_ray.trials import (
    Clone,
    StudyRecord,
    SweepObserver,
    SweepResult,
    TrialSummary,
    best_trial,
    format_summary,
    trial_name,
)

#: Tune's switch between its output engines.
NEW_OUTPUT = "RAY_AIR_NEW_OUTPUT"

#: Seconds between two progress tables on the console.
PROGRESS_EVERY_S = 30.0

#: What ASHA and Optuna rank trials by: each trial's best objective so far, the number its champion
#: candidate (its best checkpoint) is chosen by, also for trials ASHA stopped early.
RANKED_BY = "best_objective"


class DivergedTrialError(RuntimeError):
    """A trial whose losses became NaN or infinite: recorded as a failed trial, the sweep goes on."""


def in_trial_process(space: SearchSpace) -> bool:
    """Whether the sweep's trials train in their Tune trial's own process (one worker each), rather than
    as Ray Train runs of several workers."""
    return space.base.scaling.num_workers == 1


def run_trial(
    params: dict[str, Any],
    space: SearchSpace,
    study_name: str,
    storage_path: str,
    switches: dict[str, str] | None = None,
) -> None:
    """A Tune trial: the config that ``params`` (sampled by Optuna) describe, trained in this process
    (one worker) or as a Ray Train run (several). ``switches``: the test-only settings of the sweep's
    driver (a reused trial process never sees the driver's environment change). The sweep's ledger
    prints its trials' health warnings (on the sweep's console), so the trials' drivers do not."""
    from ray import tune

    cfg = space.trial_config(space.resolve(params))
    if in_trial_process(space):
        # A divergence ends the trial normally: its last report says so, and raising would have Tune
        # retry it (max_failures) from a divergence record.
        run_worker(
            loop_config(cfg, space.objective, warn=False), TuneSession(cfg.scaling.use_gpu), switches or {}
        )
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    trainer = make_trainer(
        cfg,
        name=f"{study_name}-{trial_id}",
        storage_path=storage_path,
        callbacks=[TuneReportCallback()],
        objective=space.objective,
        warn=False,
    )
    metrics = trainer.fit().metrics or {}
    if metrics.get("diverged"):
        raise DivergedTrialError(f"trial {trial_id} diverged by step {metrics.get('step')}")


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


#: Keys Tune adds to every result; the rest came from the trial's workers.
TUNE_KEYS = (
    frozenset(AUTO_RESULT_KEYS) | frozenset(DEBUG_METRICS) | {"done", "experiment_tag", "should_checkpoint"}
)


class _Trial:
    """What the ledger knows of one trial."""

    def __init__(self, trial_id: str, params: dict[str, Any], total_steps: int, observer: RunObserver | None):
        self.trial_id, self.params, self.total_steps, self.observer = trial_id, params, total_steps, observer
        self.history: list[dict[str, Any]] = []
        # An eval whose checkpoint Tune is still persisting: told to the observer in on_checkpoint.
        self.pending: dict[str, Any] | None = None
        self.status: RunStatus = "running"
        self.error: str | None = None
        self.run_id: str | None = getattr(observer, "run_id", None)
        self.initial_params = params
        self.lineage: list[Clone] = []

    def summary(self, space: SearchSpace) -> TrialSummary:
        scored = [h for h in self.history if not h.get("diverged")]
        best = space.objective.best_of(scored, lambda h: h.get("objective"))
        best_ckpt = space.objective.best_of(
            [h for h in scored if h.get(CHECKPOINT_PATH)], lambda h: h.get("objective")
        )
        last = self.history[-1] if self.history else {}
        objective = last.get("objective")
        return TrialSummary(
            trial_id=self.trial_id,
            status=self.status,
            params=self.params,
            objective=float(objective) if objective is not None else None,
            best_objective=float(best["objective"]) if best else None,
            last_step=int(last["step"]) if "step" in last else None,
            best_checkpoint=best_ckpt[CHECKPOINT_PATH] if best_ckpt else None,
            mlflow_run_id=self.run_id,
            health=last_health(scored),
            feature_extractor=next(
                (h["feature_extractor"] for h in reversed(self.history) if "feature_extractor" in h), None
            ),
            lineage=tuple(self.lineage),
        )


class TrialLedger(Callback):
    """A Tune callback in the driver: each trial's params, eval history and status, told to a recorder.

    Status: ``diverged`` (its last report says so), ``stopped_early`` (ASHA stopped it before the
    last step), ``completed``, ``collapsed`` (either of those two, but its last eval's health was not
    ok: never the champion), or ``failed`` (it raised). A trial whose health turns bad, and one that
    ends collapsed, is told in a warning line on the driver's console; with ``announce``, each PBT
    exploit in a line too.
    """

    def __init__(self, space: SearchSpace, recorder: SweepObserver | None = None, announce: bool = False):
        self.space, self.recorder, self.announce = space, recorder, announce
        self.trials: dict[str, _Trial] = {}

    def summaries(self) -> list[TrialSummary]:
        return [t.summary(self.space) for t in self.trials.values()]

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        if trial.trial_id in self.trials:
            return
        values = self.space.resolve(trial.config)
        cfg = self.space.trial_config(values)
        observer = self.recorder.trial(trial.trial_id, cfg, values) if self.recorder else None
        if observer is not None:
            observer.start(cfg)
        self.trials[trial.trial_id] = _Trial(trial.trial_id, values, cfg.train.steps, observer)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None or "step" not in result:
            return
        metrics = {k: v for k, v in result.items() if k not in TUNE_KEYS}
        if turned_bad(last_health(record.history), metrics):
            _warn(health_warning(_trial_name(trial), int(metrics["step"]), metrics, ended=False))
        record.history.append(metrics)
        if result.get(SHOULD_CHECKPOINT) and not metrics.get(CHECKPOINT_PATH):
            record.pending = metrics  # a Tune checkpoint: its path is known once Tune has saved it
            return
        self._tell_eval(record, metrics)

    def on_exploit(self, trial_id: str, source_id: str, source_step: int, config: dict[str, Any]) -> None:
        """Population-based training replaced this trial by ``source_id``'s checkpoint and ``config``."""
        record = self.trials.get(trial_id)
        if record is None:
            return
        if record.pending is not None:
            # The eval that ranked it low: its checkpoint is never saved (PBT pauses the trial first).
            metrics, record.pending = record.pending, None
            self._tell_eval(record, metrics)
        step = int(record.history[-1]["step"]) if record.history else 0
        clone = Clone(step, source_id, source_step, self.space.resolve(config))
        record.lineage.append(clone)
        if self.announce:
            moved = ", ".join(
                f"{k} {v:.3g}" for k, v in clone.params.items() if _moved(record.params.get(k), v)
            )
            _warn(
                f"gan_ray: {trial_name(trial_id)} at step {step} continues {clone}: {moved or 'same values'}"
            )
        record.params = clone.params
        if record.observer is not None:
            record.observer.on_clone(clone, tuple(record.lineage))

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None or record.pending is None:
            return
        metrics, record.pending = record.pending, None
        metrics[CHECKPOINT_PATH] = checkpoint.path
        self._tell_eval(record, metrics)

    def _tell_eval(self, record: _Trial, metrics: dict[str, Any]) -> None:
        if record.observer is None or metrics.get("diverged"):
            return
        checkpoint = metrics.get(CHECKPOINT_PATH)
        step = int(metrics["step"])
        if not checkpoint:
            record.observer.on_eval(EvalRecord(step, metrics))
            return
        try:
            with checkpoint_folder(checkpoint) as folder:
                record.observer.on_eval(EvalRecord(step, metrics, folder))
        except FileNotFoundError:  # a checkpoint the keep-policy already deleted
            record.observer.on_eval(EvalRecord(step, metrics))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None:
            return
        last = record.history[-1] if record.history else {}
        if last.get("diverged"):
            record.status = "diverged"
        elif int(last.get("step", 0)) < record.total_steps:
            record.status = "stopped_early"
        else:
            record.status = "completed"
        record.status = final_status(record.status, record.history)
        if record.status == "collapsed":
            _warn(health_warning(_trial_name(trial), int(last["step"]), last, ended=True))
        self._end(record)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None:
            return
        last = record.history[-1] if record.history else {}
        record.status = "diverged" if last.get("diverged") else "failed"
        error_file = getattr(trial, "error_file", None)
        if error_file and Path(error_file).is_file():
            record.error = Path(error_file).read_text()
        self._end(record)

    def end_unfinished(self) -> list[str]:
        """End every trial Tune left without an ending as ``killed``; returns their ids.

        Tune answers Ctrl-C by stopping its trials and returning from ``fit`` without calling any
        trial-end callback, so their runs would otherwise stay RUNNING.
        """
        unfinished = [r for r in self.trials.values() if r.status == "running"]
        for record in unfinished:
            record.status = "killed"
            record.error = "the sweep was interrupted"
            self._end(record)
        return [r.trial_id for r in unfinished]

    def end_out_of_time(self) -> None:
        """End every trial still running when the sweep's time budget ran out as stopped early (or
        collapsed): a scheduler's stop, not an interruption; its best checkpoint may be the champion."""
        for record in self.trials.values():
            if record.status == "running":
                record.status = final_status("stopped_early", record.history)
                self._end(record)

    def _end(self, record: _Trial) -> None:
        if record.observer is None:
            return
        last = record.history[-1] if record.history else {}
        diverged_at = int(last["step"]) if record.status == "diverged" and "step" in last else None
        error = record.error
        if diverged_at is not None and error is None:
            error = str(DivergedError(diverged_at, {k: v for k, v in last.items() if _number(v)}))
        curve = [h for h in record.history if not h.get("diverged")]
        record.observer.end(RunOutcome(record.status, curve, None, error=error, diverged_at=diverged_at))


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _moved(before: Any, after: Any) -> bool:
    """A numeric hyperparameter that an exploit changed (the console names those)."""
    return _number(after) and before != after


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _trial_name(trial) -> str:
    return trial_name(trial.trial_id)


def _own_process_checkpoints(space: SearchSpace) -> dict[str, Any]:
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


class _Search:
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
        self.searcher = make_searcher(space, study_name, study_url, points, RANKED_BY)
        self.scheduler = _scheduler(space)
        self.num_samples = len(points) if space.stratify else space.budget.num_samples
        self.metric, self.mode = RANKED_BY, space.objective.mode
        self.max_concurrent = concurrency

    def fail(self, trial_id: str) -> None:
        if self.space.scheduler != "pbt":
            fail_trial(self.searcher, trial_id)

    def finish(self, ledger: TrialLedger) -> None:
        """PBT: tell the study each member's best objective (the study holds the initial population)."""
        if self.space.scheduler != "pbt":
            return
        try:
            self._tell_population(ledger)
        except Exception as err:  # the study is the report's; the trials and the champion stand without it
            _warn(f"gan_ray: warning: study {self.study_name} was not told the population's values: {err}")

    def _tell_population(self, ledger: TrialLedger) -> None:
        from gan_ray.ray.pbt import tell_population

        by_start = {tuple(sorted(r.initial_params.items())): r for r in ledger.trials.values()}
        values = []
        for member in self.members:
            record = by_start.get(tuple(sorted(self.space.resolve(member).items())))
            summary = record.summary(self.space) if record is not None else None
            values.append(summary.best_objective if summary and summary.status in FINISHED else None)
        tell_population(self.study_name, self.study_url, self.members, values, self.offset)


def _scheduler(space: SearchSpace):
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


def prepare_cluster(space: SearchSpace, storage_path: str, log_to_driver: bool = True) -> dict[str, float]:
    """Connect to Ray and check that it can run this sweep at all; returns the capacity to size it by.
    ``log_to_driver``: the workers' output on this console too, not only in Ray's log files."""
    connect(log_to_driver)
    require_driver_resource()
    capacity = cluster_capacity()
    check_fits(space.base.scaling, capacity, f"search space {space.name!r}")
    check_storage(storage_path)
    return capacity


def run_sweep(
    space: SearchSpace,
    *,
    study_name: str,
    study_url: str,
    resume: bool = False,
    storage_path: str | None = None,
    recorder: SweepObserver | None = None,
    capacity: dict[str, float] | None = None,
    verbose: int = 1,
    earlier: list[TrialSummary] | None = None,
) -> SweepResult:
    """Run the sweep ``space`` in the Optuna study ``study_name``; returns every trial and the best.

    Diverged trials end as failed Optuna trials; the sweep goes on. ``verbose``: 0 prints nothing, 1 a
    progress table every :data:`PROGRESS_EVERY_S` seconds, a line per ended trial and the summary, 2 also
    Tune's own tables. ``recorder`` hears of every trial
    and, whatever happens, of the end (with the best trial's checkpoint as a local folder).
    ``capacity`` is what :func:`prepare_cluster` returned, when the caller checked the cluster already.
    ``earlier``: usable trials of the study's earlier sweeps, champion candidates beside this one's own.
    """

    storage_path = space.base.scaling.storage(storage_path)
    if capacity is None:
        capacity = prepare_cluster(space, storage_path)
    ledger = TrialLedger(space, recorder, announce=verbose >= 1)
    concurrency = max_concurrent(space, capacity)
    search = _Search(space, study_name, study_url, resume, ledger, concurrency)
    callbacks: list[Callback] = [ledger]
    if verbose:
        note = concurrency_note(space, capacity, concurrency)
        callbacks.append(_progress(space, ledger, search.num_samples, note, verbose))
    tuner = _tuner(space, search, callbacks, study_name, storage_path, verbose)
    result = SweepResult(space.name, study_name, space.objective, stratify=space.stratify)
    # An earlier trial whose checkpoint is gone (a cleaned-up storage) can be neither scored nor registered.
    result.earlier = [t for t in earlier or [] if t.best_checkpoint and checkpoint_exists(t.best_checkpoint)]
    status = "FAILED"
    started = time.monotonic()
    try:
        with _tune_output(verbose >= 2):
            result.experiment_path = tuner.fit().experiment_path
        status = "FINISHED"
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside Tune's handler: no more work
        status = "KILLED"
        raise
    finally:
        fit_returned = status == "FINISHED"
        status = _end_trials(
            ledger, search, status, out_of_time=fit_returned and _out_of_time(space, started)
        )
        result.interrupted = status == "KILLED"
        result.trials = ledger.summaries()
        search.finish(ledger)
        # After Ctrl-C too: the finished trials' best is kept, so a resumed sweep has it to beat.
        if fit_returned:
            rescore_best(result.trials + result.earlier, space, verbose)
        result.best = best_trial(result.trials + result.earlier, space.objective)
        if recorder is not None:
            result.study = _study_record(space, study_name, study_url)
            _finish(recorder, result, status, register=fit_returned)
    if verbose:
        print(format_summary(result), file=sys.stderr, flush=True)
    return result


def _end_trials(ledger: TrialLedger, search: _Search, status: str, out_of_time: bool) -> str:
    """End the trials Tune left running; returns the sweep's status (KILLED where that was Ctrl-C)."""
    if out_of_time:
        ledger.end_out_of_time()
    killed = ledger.end_unfinished()
    for trial_id in killed:
        search.fail(trial_id)
    if killed and status == "FINISHED":  # Tune's answer to Ctrl-C: fit returns, trials unfinished
        return "KILLED"
    return status


def _out_of_time(space: SearchSpace, started: float) -> bool:
    budget = space.budget.time_budget_s
    return budget is not None and time.monotonic() - started >= budget


@contextlib.contextmanager
def _tune_output(on: bool) -> Iterator[None]:
    """Tune's console output, or none: its new output engine prints a header box and a TensorBoard hint
    even when silent, its legacy reporter nothing at verbosity 0 (it reads the switch at each fit)."""
    if on:
        yield
        return
    before = os.environ.get(NEW_OUTPUT)
    os.environ[NEW_OUTPUT] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(NEW_OUTPUT, None)
        else:
            os.environ[NEW_OUTPUT] = before


def _progress(space: SearchSpace, ledger: TrialLedger, trials: int, note: str, verbose: int) -> SweepProgress:
    """The console's progress table, after a line on how many trials run at once and where the rest is."""
    print(f"gan_ray: {note}", file=sys.stderr, flush=True)
    folder = logs_dir()
    if verbose < 2 and folder:
        print(f"gan_ray: Ray's worker logs: {folder} (-v shows them here)", file=sys.stderr, flush=True)
    return SweepProgress(space, ledger, trials, every_s=PROGRESS_EVERY_S)


def _tuner(
    space: SearchSpace, search: _Search, callbacks: list, study_name: str, storage_path: str, verbose: int
):
    from ray import tune

    # Short trials checkpoint every few seconds by design; Tune's warning about it says nothing to act on.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    own_process = in_trial_process(space)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            space=space,
            study_name=study_name,
            storage_path=storage_path,
            switches=settings.test_switches(),
        ),
        # A trial that trains in its own process holds its worker's resources; a Ray Train trial's
        # driver holds a sliver of the driver resource and its workers the rest.
        run_needs(space.base.scaling) if own_process else {DRIVER_RESOURCE: DRIVER_SHARE},
    )
    return tune.Tuner(
        trainable,
        param_space=search.param_space,
        tune_config=tune.TuneConfig(
            search_alg=search.searcher,
            scheduler=search.scheduler,
            num_samples=search.num_samples,
            time_budget_s=space.budget.time_budget_s,
            max_concurrent_trials=search.max_concurrent,
            metric=search.metric,
            mode=search.mode,
            reuse_actors=own_process,  # the next trial starts in a warm process: no spawn, no imports
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"{study_name}-tune-{time.strftime('%H%M%S')}",
            storage_path=storage_path,
            callbacks=callbacks,
            # Tune's own tables (every trial's config and result) only when asked for (-v): ours are shorter.
            verbose=1 if verbose >= 2 else 0,
            **(_own_process_checkpoints(space) if own_process else {}),
        ),
    )


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


def _study_record(space: SearchSpace, study_name: str, study_url: str) -> StudyRecord | None:
    """The study, for the recorder's report; a study that cannot be read costs the report, not the sweep."""
    try:
        return read_study(
            study_name,
            study_url,
            space.objective.metric,
            stratify=space.stratify,
            searched=space.searched_keys,
        )
    except Exception as err:
        _warn(f"gan_ray: warning: no report for study {study_name}: {type(err).__name__}: {err}")
        return None


def _finish(recorder: SweepObserver, result: SweepResult, status: str, register: bool) -> None:
    best = result.best
    if best is None or not best.best_checkpoint or not register:
        recorder.finish(result, status, None)
        return
    with checkpoint_folder(best.best_checkpoint) as folder:
        recorder.finish(result, status, folder)
