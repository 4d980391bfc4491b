"""The charts of a sweep's report, drawn from a :class:`~gan_ray.search.trials.StudyRecord` with matplotlib.

Drawn here from plain data rather than with ``optuna.visualization.matplotlib``: the MLflow floor knows
no Optuna (a report of a study is also read back from MLflow's side), and Optuna's versions of these
charts are experimental. Each function writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gan_ray.objective import choose_from_front, pareto_front
from gan_ray.search.trials import StudyRecord, expected_best_of_k

# Figures use matplotlib's object API (no pyplot): no global backend, nothing shared between threads.
DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def importance_chart(record: StudyRecord, path: Path) -> Path:
    """Horizontal bars, the most important parameter on top."""
    names = list(record.importances)[::-1]
    fig = Figure(figsize=(7, 1.2 + 0.45 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [record.importances[n] for n in names], color="tab:blue")
    for y, name in enumerate(names):
        ax.text(record.importances[name], y, f" {record.importances[name]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(record.importances.values()) * 1.15 or 1)
    ax.set_xlabel(f"importance for {record.objective.metric} (fANOVA, sums to 1)")
    ax.set_title(f"{record.name}: which hyperparameters mattered ({len(record.completed)} trials)")
    return _save(fig, path)


def history_chart(record: StudyRecord, path: Path) -> Path:
    """Each completed trial's value by trial number, and the best so far."""
    return _save(history_figure(record), path)


def history_figure(record: StudyRecord) -> Figure:
    points = record.best_so_far()
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.scatter([t.number for t, _ in points], [t.value for t, _ in points], s=18, label="trial")
    ax.step(
        [t.number for t, _ in points],
        [b for _, b in points],
        where="post",
        color="tab:red",
        label="best so far",
    )
    failed = len(record.trials) - len(points)
    ax.set_xlabel("trial number" + (f" ({failed} not completed, not shown)" if failed else ""))
    ax.set_ylabel(f"{record.objective.metric} ({record.objective.mode})")
    ax.set_title(f"{record.name}: optimisation history")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a few trials read "trial 0.5" otherwise
    ax.legend()
    return fig


def best_of_k_chart(record: StudyRecord, path: Path) -> Path:
    """Per value of ``stratify``: the expected best value of k random trials against k (Lucic et al. 2018)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for value, values in record.groups().items():
        curve = expected_best_of_k(values, record.objective)
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=str(value))
    ax.set_xlabel(f"number of trials (budget per {record.stratify})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"expected best {record.objective.metric}")
    ax.set_title(f"{record.name}: best {record.objective.metric} for a budget of k random trials")
    ax.legend(title=record.stratify, fontsize=8)
    return _save(fig, path)


def box_chart(record: StudyRecord, path: Path) -> Path:
    """Per value of ``stratify``: the spread of its completed trials' values, each trial a dot."""
    groups = record.groups()
    fig = Figure(figsize=(max(5.0, 1.1 * len(groups) + 2), 4.5))
    ax = fig.subplots()
    labels = [str(v) for v in groups]
    ax.boxplot(list(groups.values()), tick_labels=labels, showfliers=False)
    for i, values in enumerate(groups.values(), start=1):
        offsets = [(j % 5 - 2) * 0.04 for j in range(len(values))]  # spread equal values apart, no RNG
        ax.scatter([i + o for o in offsets], values, s=12, alpha=0.6, color="tab:blue")
    ax.set_ylabel(f"{record.objective.metric} ({record.objective.mode})")
    ax.set_title(f"{record.name}: {record.objective.metric} per {record.stratify}")
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def parallel_chart(record: StudyRecord, path: Path) -> Path:
    """One line per completed trial across the objective and an axis per searched parameter, coloured by
    the objective (the best drawn last, on top). The objective comes first and the conditional parameters
    last, and a trial's line skips an axis it has no value on, so every line starts at its objective."""
    completed = sorted(record.completed, key=lambda t: t.value, reverse=record.objective.mode == "min")
    present = [k for k in record.searched if any(k in t.params for t in completed)]
    keys = sorted(present, key=lambda k: not all(k in t.params for t in completed))  # stable: file order
    values = [t.value for t in completed]
    axes = [_Axis.numeric(record.objective.metric, values, log=False)]
    axes += [_Axis.of(record, k, [t.params.get(k, _ABSENT) for t in completed]) for k in keys]
    fig = Figure(figsize=(max(7.0, 1.4 * len(axes) + 1), 5))
    ax = fig.subplots()
    colours = ScalarMappable(
        Normalize(min(values), max(values)),
        colormaps["viridis_r" if record.objective.mode == "min" else "viridis"],
    )
    for t in completed:
        xs = [0] + [i for i, a in enumerate(axes[1:], start=1) if a.key in t.params]
        ys = [axes[0].position(t.value)] + [axes[i].position(t.params[axes[i].key]) for i in xs[1:]]
        ax.plot(xs, ys, color=colours.to_rgba(t.value), alpha=0.8, linewidth=1.2)
    fig.colorbar(colours, ax=ax, label=f"{record.objective.metric} ({record.objective.mode})")
    for i, a in enumerate(axes):
        ax.axvline(i, color="grey", linewidth=0.8)
        for y, label in a.ticks():
            ax.text(i + 0.03, y, label, fontsize=7, va="center")
    ax.set_xticks(range(len(axes)), [a.key for a in axes], rotation=25, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"{record.name}: searched parameters of the {len(completed)} completed trials")
    return _save(fig, path)


# A conditional parameter a trial does not have, told apart from a chosen None (e.g. "no EMA").
_ABSENT: Any = object()


class _Axis:
    """One vertical axis of the parallel-coordinates chart: where a value sits on [0, 1] and its labels."""

    def __init__(self, key: str, low: float, high: float, log: bool, choices: list[Any] | None = None):
        self.key, self.low, self.high, self.log, self.choices = key, low, high, log, choices

    @classmethod
    def of(cls, record: StudyRecord, key: str, values: list[Any]) -> _Axis:
        present = [v for v in values if v is not _ABSENT]
        if key in record.choices or not all(_is_number(v) for v in present):
            order = list(record.choices.get(key, ()))
            order += sorted({str(v) for v in present} - {str(c) for c in order})
            return cls(key, 0, max(1, len(order) - 1), False, order)
        return cls.numeric(key, [float(v) for v in present], log=key in record.log_scale)

    @classmethod
    def numeric(cls, key: str, values: list[float], log: bool) -> _Axis:
        log = log and all(v > 0 for v in values)
        scaled = [math.log10(v) if log else v for v in values] or [0.0]
        return cls(key, min(scaled), max(scaled), log)

    def position(self, value: Any) -> float:
        if self.choices is not None:
            labels = [str(c) for c in self.choices]
            return labels.index(str(value)) / self.high if len(labels) > 1 else 0.5
        v = math.log10(value) if self.log else float(value)
        return (v - self.low) / (self.high - self.low) if self.high > self.low else 0.5

    def ticks(self) -> list[tuple[float, str]]:
        if self.choices is not None:
            return [(self.position(c), str(c)) for c in self.choices]
        ends = [self.low, self.high] if self.high > self.low else [self.low]
        return [
            (
                (e - self.low) / (self.high - self.low) if self.high > self.low else 0.5,
                f"{10**e if self.log else e:.3g}",
            )
            for e in ends
        ]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def pareto_chart(record: StudyRecord, path: Path) -> Path:
    """A multi-objective study: every completed trial on its first two objectives, the Pareto front drawn
    through, and the champion the stated rule picks from it."""
    objectives = record.objectives
    trials = [t for t in record.completed if len(t.values) == len(objectives)]
    points = [t.values for t in trials]
    front = sorted(pareto_front(points, objectives), key=lambda i: points[i][0])
    pick = choose_from_front(points, objectives, record.champion_rule, record.champion_weights)
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=18, color="tab:gray", label="trial")
    ax.plot(
        [points[i][0] for i in front],
        [points[i][1] for i in front],
        "o-",
        color="tab:red",
        label="Pareto front",
    )
    if pick is not None:
        ax.scatter(
            [points[pick][0]],
            [points[pick][1]],
            s=140,
            marker="*",
            color="gold",
            edgecolor="black",
            zorder=3,
            label=f"champion ({record.champion_rule})",
        )
    for j, axis in enumerate((ax.set_xlabel, ax.set_ylabel)):
        axis(f"{objectives[j].metric} ({objectives[j].mode})")
    ax.legend(fontsize=8)
    ax.set_title(f"{record.name}: {len(front)} of {len(trials)} trials on the front")
    return _save(fig, path)
