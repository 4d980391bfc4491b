"""The trial ledger: a Tune callback in the sweep's driver that keeps every trial's params, eval history
and status, and tells each to the sweep's recorder (MLflow, when tracking is on); the sweep needs none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, DEBUG_METRICS, SHOULD_CHECKPOINT
from ray.tune.stopper import Stopper

from gan_ray.errors import USER_ERRORS, DivergedError
from gan_ray.ray.progress import warn
from gan_ray.ray.train import checkpoint_folder
from gan_ray.ray.trial import tune_trial_name
from gan_ray.search.space import SearchSpace
from gan_ray.search.trials import Clone, SweepObserver, TrialSummary, trial_name
from gan_ray.training.health import health_warning, turned_bad
from gan_ray.training.observers import (
    CHECKPOINT_PATH,
    EvalRecord,
    RunObserver,
    RunOutcome,
    RunStatus,
    final_status,
    last_health,
)

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
            values=tuple(_float(last.get(o.metric)) for o in space.objectives),
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
        # The one line of an error every trial would meet, once a trial met it (the sweep then stops).
        self.sweep_wide_error: str | None = None
        # Ends a trial as FAIL in the sweep's study, and frees its place among the running ones: for a
        # trial Tune ended before it started (``(trial_id, why)``; set by the sweep).
        self.fail_in_study: Callable[[str, str], None] | None = None

    def summaries(self) -> list[TrialSummary]:
        return [t.summary(self.space) for t in self.trials.values()]

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        if trial.trial_id not in self.trials:
            self._record(trial)

    def _record(self, trial) -> _Trial:
        values = self.space.resolve(trial.config)
        cfg = self.space.trial_config(values)
        observer = self.recorder.trial(trial.trial_id, cfg, values) if self.recorder else None
        if observer is not None:
            observer.start(cfg)
        record = self.trials[trial.trial_id] = _Trial(trial.trial_id, values, cfg.train.steps, observer)
        return record

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self._fail_never_started(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        self._fail_never_started(trials)

    def _fail_never_started(self, trials: list) -> None:
        """Record as failed, at once, each trial that Tune ended in error before it ever started (Tune
        tells no callback, nor the searcher, of those): e.g. one it could not start in a reused trial
        process, whose last trial's thread did not end in time (``TUNE_FUNCTION_THREAD_TIMEOUT_S``)."""
        for trial in trials:
            if trial.status != "ERROR" or trial.trial_id in self.trials:
                continue
            record = self._record(trial)
            record.status = "failed"
            lines = (_error_text(trial) or "no error recorded").strip().splitlines()
            record.error = f"Tune did not start the trial: {lines[-1]}"
            warn(f"gan_ray: {tune_trial_name(trial)} failed: {record.error}")
            if self.fail_in_study is not None:
                self.fail_in_study(trial.trial_id, "Tune did not start it")
            self._end(record)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None or "step" not in result:
            return
        metrics = {k: v for k, v in result.items() if k not in TUNE_KEYS}
        if turned_bad(last_health(record.history), metrics):
            warn(health_warning(tune_trial_name(trial), int(metrics["step"]), metrics, ended=False))
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
            warn(
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
            warn(health_warning(tune_trial_name(trial), int(last["step"]), last, ended=True))
        self._end(record)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        record = self.trials.get(trial.trial_id)
        if record is None:
            return
        last = record.history[-1] if record.history else {}
        record.status = "diverged" if last.get("diverged") else "failed"
        record.error = _error_text(trial) or record.error
        if not record.history and self.sweep_wide_error is None:
            self.sweep_wide_error = _sweep_wide(trial)
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


def _error_text(trial) -> str | None:
    """The error Tune recorded for ``trial`` in its folder, if any."""
    error_file = getattr(trial, "error_file", None)
    return Path(error_file).read_text() if error_file and Path(error_file).is_file() else None


def _sweep_wide(trial) -> str | None:
    """The one line of ``trial``'s error when it is one every trial would meet: a user error (a dataset the
    trial's node cannot read, a plug-in that does not import there, a bad config) raised before its first
    eval. None for anything else (a crash, a lost node), which is that trial's own."""
    try:
        error = _pickled_error(trial)
    except Exception:  # an error Tune could not pickle back: not one of gan_ray's own
        return None
    cause = getattr(error, "cause", error)  # Ray's RayTaskError wraps what the trial raised
    if not isinstance(cause, USER_ERRORS):
        return None
    text = str(cause).strip()
    first_line = text.splitlines()[0] if text else ""
    return f"{trial_name(trial.trial_id)} failed before its first eval: {type(cause).__name__}: {first_line}"


def _pickled_error(trial) -> BaseException | None:
    """What the trial raised: Tune pickles it into the trial's local folder before it calls the callbacks
    (``Trial.get_pickled_error`` reads the storage's copy, which is synced only later)."""
    import cloudpickle

    local = getattr(trial, "pickled_error_file", None)
    if local and Path(local).is_file():
        return cloudpickle.loads(Path(local).read_bytes())
    return trial.get_pickled_error()


class SweepWideStopper(Stopper):
    """Stops the whole sweep once the ledger has seen a trial fail on what every trial would meet."""

    def __init__(self, ledger: TrialLedger):
        self.ledger = ledger

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.ledger.sweep_wide_error is not None


def _moved(before: Any, after: Any) -> bool:
    """A numeric hyperparameter that an exploit changed (the console names those)."""
    return _number(after) and before != after


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(value: object) -> float | None:
    """A reported metric as a float, None where it is missing or not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
