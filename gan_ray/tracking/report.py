"""A sweep's report on its parent run, under ``report/``: which hyperparameters mattered (an
``importance.<param>`` metric each, and a bar chart), the optimisation history, for a stratified study
the comparison per value (Lucic et al. 2018's best-for-a-budget figure and a box plot), parallel
coordinates of the searched parameters, and the numbers behind them as CSV tables.

Logged at the end of every sweep, and again on demand by ``gan-ray report``; it reads a
:class:`~gan_ray.search.trials.StudyRecord`, which the Optuna side provides.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan_ray.objective import choose_from_front, pareto_front
from gan_ray.search.trials import StudyRecord, expected_best_of_k
from gan_ray.tracking.charts import (
    best_of_k_chart,
    box_chart,
    history_chart,
    importance_chart,
    parallel_chart,
    pareto_chart,
)
from gan_ray.tracking.params import log_metrics
from gan_ray.tracking.store import TAG_KIND, TAG_STUDY

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

REPORT_DIR = "report"
IMPORTANCE_PREFIX = "importance."
SUMMARY_FILE = "README.md"


def write_report(record: StudyRecord, folder: Path) -> list[Path]:
    """The report's files in ``folder``: the charts the study's trials allow, the tables, and
    ``README.md`` saying what is there and, where something is missing, why."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [_write_csv(folder / "trials.csv", _trial_rows(record))]
    notes = [f"# Report of study `{record.name}`", "", _counts(record), "", f"- {record.importance_note}"]
    if record.importances:
        files += _importances(record, folder)
    if not record.completed:
        notes.append("- No charts: no trial completed.")
    else:
        files.append(history_chart(record, folder / "history.png"))
        if record.searched:
            files.append(parallel_chart(record, folder / "parallel_coordinates.png"))
        if record.stratify:
            files += _per_value(record, folder)
        if len(record.objectives) > 1:
            files.append(pareto_chart(record, folder / "pareto_front.png"))
            notes.append(_front_note(record))
    notes += ["", "Files: " + ", ".join(f"`{f.name}`" for f in files)]
    summary = folder / SUMMARY_FILE
    summary.write_text("\n".join(notes) + "\n")
    return [summary, *files]


def log_report(client: MlflowClient, run_id: str, record: StudyRecord, out: Path | None = None) -> list[str]:
    """Write the report (in ``out``, else a temporary folder), log it under ``report/`` of ``run_id`` and
    the importances as ``importance.<param>`` metrics; returns the artifact paths."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out is not None else Path(tmp)
        files = write_report(record, folder)
        for f in files:
            client.log_artifact(run_id, str(f), REPORT_DIR)
    metrics = {f"{IMPORTANCE_PREFIX}{k}": v for k, v in record.importances.items()}
    if metrics:
        log_metrics(client, run_id, len(record.completed), metrics)  # step: the trials they rest on
    return [f"{REPORT_DIR}/{f.name}" for f in files]


def importance_line(record: StudyRecord, top: int = 3) -> str:
    """One line for a Description or a console: the most important parameters, or why there are none."""
    if not record.importances:
        return record.importance_note
    best = ", ".join(f"`{k}` {v:.2f}" for k, v in list(record.importances.items())[:top])
    return f"Most important (fANOVA over {len(record.completed)} trials): {best}; see `{REPORT_DIR}/`."


def find_sweep_run(client: MlflowClient, experiment_or_study: str) -> Run | None:
    """The latest sweep parent run of experiment ``experiment_or_study``, else the latest one of the
    Optuna study of that name (a resumed study has a parent run per sweep), in any experiment."""
    sweeps = f"tags.`{TAG_KIND}` = 'sweep'"
    experiment = client.get_experiment_by_name(experiment_or_study)
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id], sweeps, order_by=["start_time DESC"], max_results=1
        )
        if runs:
            return runs[0]
    ids = [e.experiment_id for e in client.search_experiments()]
    query = f"{sweeps} and tags.`{TAG_STUDY}` = '{experiment_or_study}'"
    runs = client.search_runs(ids, query, order_by=["start_time DESC"], max_results=1) if ids else []
    return runs[0] if runs else None


def _front_note(record: StudyRecord) -> str:
    """One line: the objectives, the front's size, and the rule that picks the champion from it."""
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in record.objectives)
    trials = [t for t in record.completed if len(t.values) == len(record.objectives)]
    points = [t.values for t in trials]
    front = pareto_front(points, record.objectives)
    weights = f" with weights {list(record.champion_weights)}" if record.champion_rule == "weighted" else ""
    pick = choose_from_front(points, record.objectives, record.champion_rule, record.champion_weights)
    champion = ""
    if pick is not None:
        values = ", ".join(
            f"{o.metric} {v:.4g}" for o, v in zip(record.objectives, points[pick], strict=True)
        )
        champion = f": trial {trials[pick].number} ({values})"
    return (
        f"- Multi-objective: {objectives}; {len(front)} of {len(trials)} completed trials on the Pareto front "
        f"(`pareto_front.png`, the first two objectives); the champion is its `{record.champion_rule}` "
        f"pick{weights}{champion}. Importances are for the first objective."
    )


def _counts(record: StudyRecord) -> str:
    states: dict[str, int] = {}
    for t in record.trials:
        states[t.state] = states.get(t.state, 0) + 1
    counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items()) or "none"
    if len(record.objectives) > 1:  # what Optuna was told: each objective's value at the trial's last eval
        named = ", ".join(f"`{o.metric}` ({o.mode})" for o in record.objectives)
        return f"{len(record.trials)} trials ({counts}); objectives {named}, each at the trial's last eval."
    metric, mode = record.objective.metric, record.objective.mode
    return f"{len(record.trials)} trials ({counts}); objective `{metric}` ({mode}), each trial's best eval."


def _importances(record: StudyRecord, folder: Path) -> list[Path]:
    rows = [{"param": k, "importance": v} for k, v in record.importances.items()]
    return [
        importance_chart(record, folder / "importances.png"),
        _write_csv(folder / "importances.csv", rows),
    ]


def _per_value(record: StudyRecord, folder: Path) -> list[Path]:
    key = record.stratify
    rows = []
    for value, values in record.groups().items():
        best = None
        curve = expected_best_of_k(values, record.objective)
        for k, (expected, observed) in enumerate(zip(curve, values, strict=True), start=1):
            if best is None or record.objective.better(observed, best):
                best = observed
            rows.append({key: value, "trials": k, "expected_best": expected, "best_so_far": best})
    return [
        best_of_k_chart(record, folder / f"best_vs_trials_per_{_file_safe(key)}.png"),
        box_chart(record, folder / f"boxplot_per_{_file_safe(key)}.png"),
        _write_csv(folder / f"best_vs_trials_per_{_file_safe(key)}.csv", rows),
    ]


def _trial_rows(record: StudyRecord) -> list[dict[str, Any]]:
    best = {t.number: b for t, b in record.best_so_far()}
    keys = list(record.searched) + sorted({k for t in record.trials for k in t.params} - set(record.searched))
    return [
        {
            "number": t.number,
            "state": t.state,
            record.objective.metric: t.value,
            "best_so_far": best.get(t.number),
            **{k: t.params.get(k) for k in keys},
        }
        for t in sorted(record.trials, key=lambda t: t.number)
    ]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    keys = list(rows[0]) if rows else []
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _file_safe(key: str | None) -> str:
    return str(key).replace(".", "_")
