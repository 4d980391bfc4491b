"""Faults a test injects into a run: test sessions that wrap the run's real session (local, Ray Train
rank or Tune trial), named to the run driver by the test-only setting ``GAN_RAY_TEST_SESSION``.

:func:`inject` sets it (and its arguments) for this test; Ray runs forward both to their workers and
trials, which load this file by its path, so no worker needs ``tests/`` on its import path.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from gan_ray import settings


def inject(monkeypatch, factory: str, **args: Any) -> None:
    """Every run started in this test wraps its session in ``factory(session, **args)`` (of this file)."""
    monkeypatch.setenv(settings.TEST_SESSION, f"{Path(__file__).resolve()}:{factory}")
    monkeypatch.setenv(settings.TEST_SESSION_ARGS, json.dumps(args))


class _Wrapper:
    """The real session, unchanged but for what a subclass overrides."""

    def __init__(self, session):
        self.session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


class _CrashingStep:
    """Wraps a step function; exits this process without cleanup at the chosen step, once."""

    def __init__(self, step_fn, start_step: int, at_step: int, marker: Path):
        self.step_fn, self.step, self.at_step, self.marker = step_fn, start_step, at_step, marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.step_fn, name)

    def __call__(self) -> None:
        self.step += 1
        if self.step == self.at_step and not self.marker.exists():
            self.marker.write_text(str(self.step))
            os._exit(1)
        self.step_fn()


class CrashOnce(_Wrapper):
    """Rank ``rank``'s process dies (``os._exit``) at step ``at_step``, once: ``marker`` records it."""

    def __init__(self, session, at_step: int, marker: str, rank: int = 0):
        super().__init__(session)
        self.at_step, self.marker, self.crash_rank = at_step, Path(marker), rank

    def started(self, training) -> None:
        self.session.started(training)
        if training.rank == self.crash_rank:
            training.step_fn = _CrashingStep(training.step_fn, training.step, self.at_step, self.marker)


class NanSamples(_Wrapper):
    """Rank ``rank``'s eval samples come out NaN (its G's weights stay finite)."""

    def __init__(self, session, rank: int = 0):
        super().__init__(session)
        self.nan_rank = rank

    def started(self, training) -> None:
        self.session.started(training)
        if training.rank == self.nan_rank:
            sample = training.sample
            training.sample = lambda n=None: sample(n) * float("nan")


class LingerAfterStop(_Wrapper):
    """The run's thread lingers ``seconds`` after Tune told it to stop (at a report), as a thread that
    takes long to end would; ``thread_timeout_s`` sets how long Tune waits for it in this trial process.
    Each run appends the id of the process it trains in to the file ``starts``."""

    def __init__(self, session, seconds: float, starts: str, thread_timeout_s: float | None = None):
        super().__init__(session)
        self.seconds, self.starts, self.thread_timeout_s = seconds, Path(starts), thread_timeout_s

    def started(self, training) -> None:
        self.session.started(training)
        if self.thread_timeout_s is not None:
            os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = str(self.thread_timeout_s)
        with self.starts.open("a") as out:
            out.write(f"{os.getpid()}\n")

    def report(self, metrics, write, dir_name: str) -> None:
        try:
            self.session.report(metrics, write, dir_name)
        except SystemExit:  # Tune's way to end a trial's thread at its report
            time.sleep(self.seconds)
            raise
