"""A Tune trial: the function Tune runs for each sampled config, in its own process (one worker) or as
the driver of a Ray Train run (several), and the name every trial goes by in Tune."""

from __future__ import annotations

from typing import Any

from gan_ray import settings
from gan_ray.ray.train import make_trainer
from gan_ray.ray.worker import TuneSession
from gan_ray.search.space import SearchSpace
from gan_ray.search.trials import trial_name
from gan_ray.training.driver import loop_config, run_worker


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
    (one worker) or as a Ray Train run (several). ``switches``: the test-only fault switches of the
    sweep's driver (a reused trial process never sees the driver's environment change)."""
    from ray import tune

    cfg = space.trial_config(space.resolve(params))
    if in_trial_process(space):
        # Tune reuses this process for the next trial once this one's thread has ended.
        settings.default_tune_thread_timeout()
        # A divergence ends the trial normally: its last report says so, and raising would have Tune
        # retry it (max_failures) from a divergence record.
        # The sweep's ledger prints its trials' health warnings on the sweep's console: the trials do not.
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


def tune_trial_name(trial) -> str:
    """A Tune trial's name and folder: the sweep's one name for the trial."""
    return trial_name(trial.trial_id)
