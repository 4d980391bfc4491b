"""A sweep in MLflow: a parent run, one child :class:`~gan_ray.tracking.run.MlflowRun` per trial, and at
the end the all-trials table, the best trial, and the best generator registered as a model version whose
``champion`` alias moves only to a better one.

:class:`MlflowSweep` is the :class:`~gan_ray.search.trials.SweepObserver` the Tune layer talks to; it knows
nothing of Ray.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gan_ray.config import GanConfig, config_yaml
from gan_ray.objective import Objective
from gan_ray.search.space import SearchSpace
from gan_ray.search.trials import (
    SweepResult,
    TrialSummary,
    champion_note,
    registration,
    status_counts,
    trial_name,
)
from gan_ray.tracking.model import log_generator_from_folder
from gan_ray.tracking.registry import (
    champion_version,
    default_model_name,
    incomparable,
    register_champion,
    scoring_tags,
)
from gan_ray.tracking.report import importance_line, log_report
from gan_ray.tracking.run import MlflowRun
from gan_ray.tracking.store import (
    TAG_BEST_CHECKPOINT,
    TAG_DATASET,
    TAG_ERROR,
    TAG_FEATURE_EXTRACTOR,
    TAG_HEALTH,
    TAG_KIND,
    TAG_NOTE,
    TAG_PARENT_RUN,
    TAG_RESUMES,
    TAG_SEARCHED,
    TAG_STATUS,
    TAG_STUDY,
    TAG_TRIAL_ID,
    code_tags,
    ensure_experiment,
    make_client,
    resolve_tracking_uri,
)
from gan_ray.tracking.view import runs_views, view_link
from gan_ray.tracking.writer import TrackingWriter
from gan_ray.training.observers import USABLE


def sweep_params(space: SearchSpace, study_name: str) -> dict[str, str]:
    """The sweep's settings as flat strings: the parent run's params."""
    stratify = {"sweep.stratify": space.stratify} if space.stratify else {}
    pbt = space.pbt
    population = (
        {
            "sweep.pbt.mutate": ",".join(pbt.mutate),
            "sweep.pbt.perturbation_interval_evals": str(pbt.perturbation_interval),
            "sweep.pbt.quantile_fraction": str(pbt.quantile_fraction),
            "sweep.pbt.resample_probability": str(pbt.resample_probability),
        }
        if pbt is not None
        else {}
    )
    # A multi-objective sweep: every objective and the rule that picks its champion (sweep.metric: the first).
    objectives = (
        {
            "sweep.objectives": ",".join(f"{o.metric}:{o.mode}" for o in space.objectives),
            "sweep.champion_rule": space.champion_rule
            + (f" {list(space.champion_weights)}" if space.champion_rule == "weighted" else ""),
        }
        if space.multi_objective
        else {}
    )
    return {
        **stratify,
        **population,
        **objectives,
        "sweep.name": space.name,
        "sweep.study": study_name,
        "sweep.metric": space.objective.metric,
        "sweep.mode": space.objective.mode,
        "sweep.sampler": space.sampler,
        "sweep.scheduler": space.scheduler,
        "sweep.num_samples": str(space.budget.num_samples),
    }


def objectives_from_params(params: Mapping[str, str]) -> tuple[tuple[Objective, ...], str, tuple[float, ...]]:
    """A multi-objective sweep's objectives, champion rule and weights, read back from the parent run's
    params (:func:`sweep_params`); ``((), "first_objective", ())`` for a single objective."""
    objectives = tuple(
        Objective(*item.split(":")) for item in params.get("sweep.objectives", "").split(",") if item
    )
    rule, _, weights = params.get("sweep.champion_rule", "first_objective").partition(" ")
    return objectives, rule, tuple(json.loads(weights)) if weights else ()


def searched_tag(space: SearchSpace) -> str:
    """The ``gan_ray.searched_params`` tag: the searched keys, comma-separated, in the file's order."""
    return ",".join(space.searched_keys)


class MlflowSweep:
    """Creates the sweep's parent run now; a child run per trial; the summary and the champion at the end."""

    def __init__(
        self,
        tracking_uri: str | None,
        space: SearchSpace,
        study_name: str,
        *,
        experiment: str | None = None,
        model_name: str | None = None,
        register: bool = True,
        resume: bool = False,
    ):
        """With ``resume``, the runs that the study's earlier sweeps left RUNNING are ended first
        (:func:`close_interrupted`), and the new parent run links to the latest earlier one."""
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.space, self.study_name = space, study_name
        self.model_name = model_name or default_model_name(space.name)
        self.register = register
        self.client = make_client(self.tracking_uri)
        self.experiment_id = ensure_experiment(self.client, experiment or space.name, self.tracking_uri)
        self.experiment = experiment or space.name
        earlier = close_interrupted(self.client, self.experiment_id, study_name) if resume else []
        self.resumes = earlier[-1] if earlier else None
        parent = self.client.create_run(
            self.experiment_id,
            run_name=study_name,
            tags={
                TAG_STUDY: study_name,
                TAG_DATASET: space.base.data.name,
                TAG_KIND: "sweep",
                TAG_SEARCHED: searched_tag(space),
                **({TAG_RESUMES: self.resumes} if self.resumes else {}),
                **code_tags(),
            },
        )
        self.parent_run_id = parent.info.run_id
        for key, value in sweep_params(space, study_name).items():
            self.client.log_param(self.parent_run_id, key, value)
        if space.source is not None and space.source.is_file():
            self.client.log_artifact(self.parent_run_id, str(space.source))
        self.client.log_text(self.parent_run_id, config_yaml(space.base), "base_config.yaml")
        # The runs table's columns and order for this sweep (the latest sweep's, where several share it).
        for key, value in runs_views(space).items():
            self.client.set_experiment_tag(self.experiment_id, key, value)
        self.runs: dict[str, MlflowRun] = {}
        # The trials' records are written in the background: Tune calls the ledger in its scheduling loop.
        self.writer = TrackingWriter(self.tracking_uri)

    def earlier_trials(self) -> list[TrialSummary]:
        """The usable trials of the study's earlier sweeps that never reached a sweep's end, where the
        champion is chosen (a ``kill -9``ed sweep's), with the best checkpoint each left on the storage:
        champion candidates beside this sweep's own. Trials of a sweep that ended (also by Ctrl-C) have
        competed already: its best was registered, the others lost to it."""
        metric = self.space.objective.metric
        runs = _study_runs(self.client, self.experiment_id, self.study_name)
        competed = {
            r.info.run_id
            for r in runs
            if r.data.tags.get(TAG_KIND) == "sweep" and BEST_TRIAL in r.data.params
        }
        out = []
        for run in runs:
            tags = run.data.tags
            best = run.data.metrics.get(f"best_{metric}")
            if tags.get(TAG_KIND) == "sweep" or tags.get(TAG_STATUS) not in USABLE or best is None:
                continue
            if not tags.get(TAG_BEST_CHECKPOINT) or tags.get(TAG_PARENT_RUN) in competed:
                continue
            searched = [k for k in tags.get(TAG_SEARCHED, "").split(",") if k in run.data.params]
            out.append(
                TrialSummary(
                    trial_id=tags.get(TAG_TRIAL_ID, run.info.run_name),
                    status=tags[TAG_STATUS],
                    params={k: _param_value(run.data.params[k]) for k in searched},
                    objective=run.data.metrics.get(metric),
                    best_objective=best,
                    last_step=None,
                    best_checkpoint=tags[TAG_BEST_CHECKPOINT],
                    mlflow_run_id=run.info.run_id,
                    health=tags.get(TAG_HEALTH),
                    feature_extractor=tags.get(TAG_FEATURE_EXTRACTOR),
                )
            )
        return out

    def trial(self, trial_id: str, config: GanConfig, params: dict[str, Any]) -> MlflowRun:
        run = MlflowRun(
            self.tracking_uri,
            self.experiment,
            trial_name(trial_id),
            parent_run_id=self.parent_run_id,
            tags={TAG_TRIAL_ID: trial_id, TAG_STUDY: self.study_name, TAG_SEARCHED: searched_tag(self.space)},
            objective=self.space.objective,
            log_model=False,
            log_checkpoint=False,
            writer=self.writer,
        )
        self.runs[trial_id] = run
        return run

    def finish(self, result: SweepResult, status: str, best_folder: Path | None) -> None:
        """Record the sweep's outcome on the parent run, register the best generator, end the parent run.

        The trials' queued records are written first (or given up and tagged), so their runs are
        complete and ended before the parent run ends and the champion is chosen from them."""
        result.tracking_uri, result.parent_run_id = self.tracking_uri, self.parent_run_id
        self.writer.close()
        try:
            rows = result.rows()
            if rows:
                self.client.log_text(self.parent_run_id, _csv(rows), "trials.csv")
            metric = result.objective.metric
            for t in result.trials + result.earlier:  # the larger evaluation, on each rescored trial's run
                if t.final_objective is not None and t.mlflow_run_id:
                    self.client.log_metric(t.mlflow_run_id, f"final_{metric}", t.final_objective)
            best = result.best
            if best is not None:
                for key, value in best.params.items():
                    self.client.log_param(self.parent_run_id, f"best.{key}", str(value))
                self.client.log_param(self.parent_run_id, BEST_TRIAL, best.trial_id)
                self.client.log_metric(self.parent_run_id, f"best_{metric}", best.best_objective)
                if best.final_objective is not None:
                    self.client.log_metric(self.parent_run_id, f"final_{metric}", best.final_objective)
                if self.register and best_folder is not None and best.mlflow_run_id:
                    self._register(result, best_folder)
            if result.study is not None:
                self._report(result)
            note = describe(result)
            note += f"\n\nThe trials side by side: [the runs table]({view_link(self.experiment_id)})."
            if self.resumes:
                link = f"#/experiments/{self.experiment_id}/runs/{self.resumes}"
                note += f"\n\nResumes the sweep run [{self.resumes}]({link}) of the same study."
            self.client.set_tag(self.parent_run_id, TAG_NOTE, note)
        finally:
            self.client.set_tag(self.parent_run_id, TAG_STATUS, SWEEP_STATUS.get(status, status.lower()))
            self.client.set_terminated(self.parent_run_id, status)

    def _report(self, result: SweepResult) -> None:
        """The study's report under ``report/``; a chart that fails costs the report, not the sweep's end."""
        assert result.study is not None
        try:
            log_report(self.client, self.parent_run_id, result.study)
        except Exception as err:
            result.study = None  # the Description must not point at a report that is not there
            warnings.warn(f"the report of study {self.study_name} failed: {err}", stacklevel=2)

    def _register(self, result: SweepResult, folder: Path) -> None:
        best = result.best
        assert best is not None and best.mlflow_run_id and best.champion_score is not None
        model_uri = log_generator_from_folder(folder, best.mlflow_run_id, self.tracking_uri)
        cfg = self.space.trial_config(self.space.resolve(best.params))
        samples = best.final_samples or cfg.train.eval_samples
        scoring = scoring_tags(cfg.data.name, samples, best.feature_extractor)
        holder = champion_version(self.model_name, self.tracking_uri)
        version, promoted = register_champion(
            model_uri,
            self.model_name,
            result.objective.metric,
            best.champion_score,
            result.objective.mode,
            best.mlflow_run_id,
            cfg,
            self.tracking_uri,
            scoring=scoring,
            searched=best.params,
        )
        result.model_name, result.model_version, result.promoted = self.model_name, str(version), promoted
        why = incomparable(holder, scoring) if holder is not None else None
        if not promoted and why is not None:
            result.kept_because = f"{why}; move the alias by hand, or register under another --model-name"


#: The parent run's param naming its best trial: logged where a sweep chose its champion.
BEST_TRIAL = "best.trial_id"

#: A sweep's MLflow status -> its parent run's ``gan_ray.status``.
SWEEP_STATUS = {"FINISHED": "finished", "KILLED": "interrupted", "FAILED": "failed"}

#: Why the runs a dead driver left RUNNING were ended (their ``gan_ray.error``).
DRIVER_DIED = (
    "the sweep's driver ended while this trial ran (killed, or its machine lost); ended as killed "
    "when the sweep was resumed"
)


def close_interrupted(client, experiment_id: str, study_name: str) -> list[str]:
    """End the runs of ``study_name`` that a sweep whose driver died left RUNNING: trials KILLED
    (``gan_ray.status`` killed, ``gan_ray.error`` saying why), parent runs KILLED (``gan_ray.status``
    interrupted, a Description saying so). Returns the study's earlier parent runs, oldest first.

    Only for a study no other sweep is running: a live sweep's runs are RUNNING too.
    """
    runs = _study_runs(client, experiment_id, study_name)
    parents = sorted(
        (r for r in runs if r.data.tags.get(TAG_KIND) == "sweep"), key=lambda r: r.info.start_time
    )
    running = [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in running if r.data.tags.get(TAG_KIND) != "sweep"]
    for run in killed:
        client.set_tag(run.info.run_id, TAG_STATUS, "killed")
        client.set_tag(run.info.run_id, TAG_ERROR, DRIVER_DIED)
        client.set_terminated(run.info.run_id, "KILLED")
    for run in (r for r in running if r.data.tags.get(TAG_KIND) == "sweep"):
        mine = [r for r in killed if r.data.tags.get(TAG_PARENT_RUN) == run.info.run_id]
        client.set_tag(
            run.info.run_id,
            TAG_NOTE,
            f"**Interrupted**: the sweep's driver ended without closing it (killed, or its machine lost), "
            f"with {len(mine)} trial(s) running; they and this run were ended as killed when study "
            f"`{study_name}` was resumed.",
        )
        client.set_tag(run.info.run_id, TAG_STATUS, SWEEP_STATUS["KILLED"])
        client.set_terminated(run.info.run_id, "KILLED")
    return [r.info.run_id for r in parents]


def _param_value(text: str) -> Any:
    """A logged param back as the value it was: YAML, and floats that YAML 1.1 reads as text (``1e-05``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _study_runs(client, experiment_id: str, study_name: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], f"tags.`{TAG_STUDY}` = '{study_name}'", max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def describe(result: SweepResult) -> str:
    """The parent run's Description in the UI: what was searched, how trials ended, the winner (Markdown)."""
    counts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in status_counts(result).items())
    metric, mode = result.objective.metric, result.objective.mode
    lines = [
        f"gan_ray sweep **{result.name}** (study `{result.study_name}`): {len(result.trials)} trials "
        f"({counts or 'none ran'}), ranked by `{metric}` ({mode}).",
    ]
    if result.interrupted:
        lines.append("Interrupted: the trials still running were killed; the finished ones count.")
    collapsed = [f"`{t.trial_id}` ({t.health})" for t in result.trials if t.status == "collapsed"]
    if collapsed:
        lines.append(
            f"Collapsed, so never the champion (their last eval's `gan_ray.health` was not ok): "
            f"{', '.join(collapsed)}."
        )
    best = result.best
    if best is None:
        lines.append("No usable trial (completed or stopped early, with a finite objective).")
        return "\n\n".join(lines)
    score = f"{metric} {best.best_objective:.4g} at its best eval"
    if best.final_objective is not None:
        score += f", {best.final_objective:.4g} on {best.final_samples} samples"
    lines.append(f"Best: trial `{best.trial_id}` (run `{trial_name(best.trial_id)}`), {score}.")
    if result.champion_rule is not None:
        lines.append(f"Champion: {champion_note(result)}.")
    if result.model_name:
        lines.append(f"Model: `models:/{result.model_name}/{result.model_version}` ({registration(result)}).")
    if result.study is not None:
        lines.append(importance_line(result.study))
    return "\n\n".join(lines)


def _csv(rows: list[dict[str, Any]]) -> str:
    keys = sorted({k for row in rows for k in row})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
