"""What a person watching a sweep reads: a progress table every so often (trials running, done and
waiting, the best so far, the time gone and an estimate of the time left) and a line as each trial ends.

It replaces Tune's own console output (its tables print every trial's full config and result); Ray's
per-worker lines go to Ray's log files, not the terminal (``gan-ray sweep -v`` brings both back).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ray.tune import Callback

from gan_ray.search.space import SearchSpace
from gan_ray.search.trials import trial_name


def warn(line: str) -> None:
    """A line for the person watching the sweep, on the driver's console (stderr), at once."""
    print(line, file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    """``1:05:09``, ``4:02``, ``0:07``."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def time_left(elapsed: float, done_steps: int, total_steps: int) -> float | None:
    """The time the remaining steps take at the pace so far (None before a step is done). Trials a
    scheduler stops early end sooner: an upper estimate under ASHA."""
    if done_steps <= 0 or elapsed <= 0:
        return None
    return elapsed * max(total_steps - done_steps, 0) / done_steps


class SweepProgress(Callback):
    """Tune callback in the driver: reads the trial ledger (which must come before it among the
    callbacks) and prints to ``out`` every ``every_s`` seconds and at each trial's end."""

    def __init__(
        self, space: SearchSpace, ledger, total_trials: int, every_s: float = 30.0, out: TextIO | None = None
    ):
        self.space, self.ledger, self.total = space, ledger, total_trials
        self.every_s, self.out = every_s, out
        self.start = time.monotonic()
        self.last_print = self.start

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stderr, flush=True)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if time.monotonic() - self.last_print >= self.every_s:
            self._print(self.table())

    def on_experiment_end(self, trials: list, **info) -> None:
        self._print(self.table())

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._print(self.ended_line(trial.trial_id))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._print(self.ended_line(trial.trial_id))

    def ended_line(self, trial_id: str) -> str:
        record = self.ledger.trials.get(trial_id)
        if record is None:
            return f"gan_ray: {trial_name(trial_id)} ended"
        s = record.summary(self.space)
        best = (
            f", best {self.space.objective.metric} {s.best_objective:.4g}"
            if s.best_objective is not None
            else ""
        )
        return f"gan_ray: {trial_name(trial_id)} {s.status} at step {s.last_step or 0}{best}"

    def table(self) -> str:
        """The progress table: one header line, then a row per running trial."""
        self.last_print = time.monotonic()
        records = list(self.ledger.trials.values())
        running = [r for r in records if r.status == "running"]
        waiting = max(self.total - len(records), 0)
        steps = self.space.base.train.steps
        done = sum(_last_step(r) for r in records)
        total = (
            sum(_last_step(r) if r.status != "running" else r.total_steps for r in records) + waiting * steps
        )
        elapsed = time.monotonic() - self.start
        left = time_left(elapsed, done, total)
        budget = self.space.budget.time_budget_s
        if budget is not None:  # the sweep stops there whatever is left to do
            left = max(budget - elapsed, 0.0) if left is None else min(left, max(budget - elapsed, 0.0))
        if not running and not waiting:
            eta = "finished"
        else:
            eta = f"about {clock(left)} left" if left is not None else "time left not known yet"
        metric = self.space.objective.metric
        summaries = [r.summary(self.space) for r in records]
        best = self.space.objective.best_of(
            [s for s in summaries if s.best_objective is not None], lambda s: s.best_objective
        )
        best_text = (
            f"best {metric} {best.best_objective:.4g} ({trial_name(best.trial_id)})"
            if best
            else "no eval yet"
        )
        lines = [
            f"gan_ray: {self.space.name} | {clock(elapsed)} elapsed, {eta} | {len(running)} running, "
            f"{len(records) - len(running)} done, {waiting} waiting (of {self.total}) | {best_text}"
        ]
        for r in running:
            last = r.history[-1] if r.history else {}
            value = last.get("objective")
            now = f"{metric} {value:.4g}" if isinstance(value, (int, float)) else "no eval yet"
            lines.append(f"  {trial_name(r.trial_id)}  step {_last_step(r):>6}/{r.total_steps}  {now}")
        return "\n".join(lines)


def _last_step(record) -> int:
    return int(record.history[-1].get("step", 0)) if record.history else 0
