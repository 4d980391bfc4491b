"""A sweep on Ray Tune, from the cluster check to the champion: an Optuna study whose trials are runs of
the GAN loop (:mod:`~gan_ray.ray.trial`), proposed and stopped as :mod:`~gan_ray.ray.strategy` chooses.

A single-worker trial trains in its Tune trial's own process (:class:`~gan_ray.ray.worker.TuneSession`):
Tune keeps its checkpoints, restarts it from the latest one after a crash (``scaling.max_failures``)
and reuses the process for the next trial, so a short trial pays no start-up of its own. A trial of
several workers is a Ray Train run: its Tune function builds and fits a TorchTrainer (Ray Train V2
pattern), and ``TuneReportCallback`` forwards rank 0's eval reports to Tune. Either way ASHA may stop
the trial early and OptunaSearch feeds the objective back to the sampler.
:class:`~gan_ray.ray.ledger.TrialLedger`, a Tune callback in the driver, keeps every trial's history and
decides its status; a recorder (MLflow, when tracking is on) hears of every trial through it, but the
sweep needs none. At the end the best few are scored again (:mod:`~gan_ray.ray.rescore`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

from ray.tune import Callback

from gan_ray import settings
from gan_ray.errors import TrialsCannotRunError
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
from gan_ray.ray.ledger import SweepWideStopper, TrialLedger
from gan_ray.ray.progress import SweepProgress, warn
from gan_ray.ray.rescore import rescore_best
from gan_ray.ray.strategy import SearchStrategy, concurrency_note, max_concurrent, own_process_checkpoints
from gan_ray.ray.study import read_study
from gan_ray.ray.train import checkpoint_exists, checkpoint_folder
from gan_ray.ray.trial import in_trial_process, run_trial, tune_trial_name
from gan_ray.search.space import SearchSpace
from gan_ray.search.trials import (
    StudyRecord,
    SweepObserver,
    SweepResult,
    TrialSummary,
    best_trial,
    format_summary,
    front_champion,
)

#: Tune's switch between its output engines.
NEW_OUTPUT = "RAY_AIR_NEW_OUTPUT"

#: Seconds between two progress tables on the console.
PROGRESS_EVERY_S = 30.0


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
    search = SearchStrategy(space, study_name, study_url, resume, ledger, concurrency)
    ledger.fail_in_study = search.fail  # a trial never started: a resumed sweep runs it again
    callbacks: list[Callback] = [ledger]
    if verbose:
        note = concurrency_note(space, capacity, concurrency)
        callbacks.append(_progress(space, ledger, search.num_samples, note, verbose))
    tuner = _tuner(space, search, callbacks, study_name, storage_path, verbose, SweepWideStopper(ledger))
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
        # A sweep stopped on an error every trial would meet has no champion to score or register.
        fit_returned = status == "FINISHED" and ledger.sweep_wide_error is None
        status = _end_trials(
            ledger, search, status, out_of_time=fit_returned and _out_of_time(space, started)
        )
        result.interrupted = status == "KILLED"
        result.trials = ledger.summaries()
        search.finish(ledger)
        # After Ctrl-C too: the finished trials' best is kept, so a resumed sweep has it to beat.
        _choose_champion(result, space, rescore=fit_returned, verbose=verbose)
        if recorder is not None:
            result.study = _study_record(space, study_name, study_url)
            _finish(recorder, result, status, register=fit_returned)
    if verbose:
        print(format_summary(result), file=sys.stderr, flush=True)
    _raise_if_stopped(space, ledger)
    return result


def _choose_champion(result: SweepResult, space: SearchSpace, rescore: bool, verbose: int) -> None:
    """``result.best``: the best trial by the objective (its best few scored again where ``rescore``), or
    for a multi-objective sweep the rule's pick from the Pareto front (no rescoring of one objective)."""
    candidates = result.trials + result.earlier
    if space.multi_objective:
        result.best, result.front = front_champion(
            candidates, space.objectives, space.champion_rule, space.champion_weights
        )
        result.champion_rule, result.objectives = space.champion_rule, space.objectives
        return
    if rescore:
        rescore_best(candidates, space, verbose)
    result.best = best_trial(candidates, space.objective)


def _raise_if_stopped(space: SearchSpace, ledger: TrialLedger) -> None:
    if ledger.sweep_wide_error is not None:
        raise TrialsCannotRunError(
            f"sweep {space.name!r} stopped: {ledger.sweep_wide_error}; every trial would meet it, so the "
            "rest were not run"
        )


def _end_trials(ledger: TrialLedger, search: SearchStrategy, status: str, out_of_time: bool) -> str:
    """End the trials Tune left running; returns the sweep's status (KILLED where that was Ctrl-C, FAILED
    where a trial met an error every trial would meet and the sweep stopped the rest)."""
    if out_of_time:
        ledger.end_out_of_time()
    killed = ledger.end_unfinished()
    for trial_id in killed:
        search.fail(trial_id)
    if ledger.sweep_wide_error is not None:
        return "FAILED"
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
    space: SearchSpace,
    search: SearchStrategy,
    callbacks: list,
    study_name: str,
    storage_path: str,
    verbose: int,
    stopper=None,
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
            trial_name_creator=tune_trial_name,
            trial_dirname_creator=tune_trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"{study_name}-tune-{time.strftime('%H%M%S')}",
            storage_path=storage_path,
            callbacks=callbacks,
            stop=stopper,
            # Tune's own tables (every trial's config and result) only when asked for (-v): ours are shorter.
            verbose=1 if verbose >= 2 else 0,
            **(own_process_checkpoints(space) if own_process else {}),
        ),
    )


def _study_record(space: SearchSpace, study_name: str, study_url: str) -> StudyRecord | None:
    """The study, for the recorder's report; a study that cannot be read costs the report, not the sweep."""
    try:
        return read_study(
            study_name,
            study_url,
            space.objective.metric,
            stratify=space.stratify,
            objectives=space.objectives,
            champion_rule=space.champion_rule,
            champion_weights=space.champion_weights,
            searched=space.searched_keys,
        )
    except Exception as err:
        warn(f"gan_ray: warning: no report for study {study_name}: {type(err).__name__}: {err}")
        return None


def _finish(recorder: SweepObserver, result: SweepResult, status: str, register: bool) -> None:
    best = result.best
    if best is None or not best.best_checkpoint or not register:
        recorder.finish(result, status, None)
        return
    with checkpoint_folder(best.best_checkpoint) as folder:
        recorder.finish(result, status, folder)
