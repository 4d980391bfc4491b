"""The one run driver: the worker body every run trains in, local or under Ray, reporting to a session.

A :class:`Session` says where the worker runs (its rank, device, checkpoint to resume from) and where
an eval's report goes: a local output folder (:mod:`gan_ray.training.local`), a Ray Train rank or a
Tune trial (:mod:`gan_ray.ray.worker`). The driver owns what must be the same everywhere: resuming,
the divergence record, the health warnings. Plain PyTorch: no Ray, no MLflow.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch

from gan_ray import settings
from gan_ray.config import GanConfig, check_resumable, validate_config
from gan_ray.errors import ConfigError, DivergedError
from gan_ray.models import unwrap
from gan_ray.objective import Objective
from gan_ray.training.checkpoint import load_checkpoint, read_divergence, write_divergence, write_run_state
from gan_ray.training.health import health_warning, turned_bad
from gan_ray.training.loop import EvalReport, Training, build_training, default_evaluator, run_loop
from gan_ray.training.observers import final_status, last_health
from gan_ray.training.result import diverged_metrics

#: Seconds rank 0 took to write an eval's run-state folder (before the session keeps it), in its report.
TIME_CHECKPOINT = "time_checkpoint_s"
#: How many times the run started again from its checkpoint: after a lost worker or node
#: (``scaling.max_failures``), or a resume. In every report, 0 before any.
RESTARTS = "restarts"
#: Of a run of several workers: how many nodes its ranks ran on, and their node ids by rank.
WORKER_NODES = "worker_nodes"
WORKER_NODE_IDS = "worker_node_ids"

#: Writes a report's run-state folder (or divergence record) into the folder it is given.
FolderWriter = Callable[[Path], object]


class Checkpoint(Protocol):
    """A checkpoint to resume from: Ray's ``Checkpoint``, or :class:`FolderCheckpoint` for a local folder."""

    def as_directory(self) -> AbstractContextManager[str]: ...


class Session(Protocol):
    """Where a worker runs: its rank, its device, the checkpoint to resume from, and how it reports."""

    rank: int
    world_size: int
    name: str

    def device(self) -> torch.device: ...

    def node_id(self) -> str: ...

    def wrap_model(self, module: torch.nn.Module) -> torch.nn.Module: ...

    def local_file(self, uri: str | None) -> AbstractContextManager[str | None]:
        """The file at ``uri`` (the config's feature extractor) as a local path, while the context lasts."""
        ...

    def checkpoint(self) -> Checkpoint | None: ...

    def started(self, training: Training) -> None:
        """Called once the run's objects are built and resumed, before its first step: a session may
        watch or wrap them (the test sessions of tests/faults.py inject their faults so)."""
        ...

    def should_stop(self) -> bool:
        """Whether the run was told to stop (a sweep's scheduler stopped its trial): asked before every
        step, so it must be cheap and never sync a device. The run then ends at once, unreported."""
        ...

    def report(self, metrics: dict[str, Any], write: FolderWriter | None, dir_name: str) -> None:
        """Report an eval's ``metrics``; from rank 0 with ``write``, which makes a folder the
        checkpoint to keep (named ``dir_name`` where the session names them)."""
        ...


class FolderCheckpoint:
    """A local run-state folder as a checkpoint to resume from."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def as_directory(self) -> AbstractContextManager[str]:
        return nullcontext(str(self.folder))


def loop_config(cfg: GanConfig, objective: Objective, *, warn: bool = True) -> dict[str, Any]:
    """What a worker needs to run ``cfg``, as plain data (it travels to other processes). ``warn``: the
    driver prints the health warnings (a sweep's ledger prints its trials' own on the sweep's console)."""
    return {
        "config": cfg.model_dump(mode="json"),
        "objective": [objective.metric, objective.mode],
        "warn": warn,
    }


def refuse_diverged(folder: str | Path, name: str) -> None:
    """Refuse to resume from a divergence record: it would continue a NaN model."""
    record = read_divergence(folder)
    if record is not None:
        raise ConfigError(
            f"run {name!r} diverged at step {record['step']}; a resume would continue a NaN model: "
            "start a new run (another name), with other hyperparameters"
        )


def check_resume(cfg: GanConfig, folder: Path | None, name: str) -> None:
    """Refuse, before anything starts, to resume run ``name`` from ``folder`` (its latest checkpoint;
    None: nothing to resume) if it diverged, or under a config that changes its game."""
    if folder is None:
        return
    refuse_diverged(folder, name)
    check_resumable(load_checkpoint(folder)["config"], cfg, f" run {name!r} from {folder}")


def fresh_start_line(name: str, where: str) -> str:
    """The line a run started without ``resume`` prints where it removed the run's earlier checkpoints."""
    return f"gan_ray: run {name!r} starts afresh: removed its earlier checkpoints in {where} (--resume continues a run)"


def replica_param_spread(training: Training) -> float:
    """The largest difference of any G or D parameter between ranks: 0 when DDP keeps replicas in step.

    A collective: every rank must call it at the same point.
    """
    import torch.distributed as dist

    params = [
        p.detach().flatten().float()
        for m in (training.generator, training.discriminator)
        for p in unwrap(m).parameters()
    ]
    flat = torch.cat(params)
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max())


def rank_node_ids(session: Session) -> list[str]:
    """The node id of every rank, by rank: where the worker group really runs (on a cluster, not
    necessarily one rank per node). A collective: every rank must call it at the same point."""
    import torch.distributed as dist

    ids: list[str | None] = [None] * session.world_size
    dist.all_gather_object(ids, session.node_id())
    return [str(i) for i in ids]


def _resume(training: Training, session: Session, device: torch.device) -> int:
    """Load the session's checkpoint, if any, into ``training``; returns the restart count to report:
    0 without one, else one more than the checkpoint's last eval reported."""
    checkpoint = session.checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        refuse_diverged(directory, session.name)
        training.load_state_dict(load_checkpoint(directory, map_location=device))
    history = training.history
    return int(history[-1].get(RESTARTS, 0)) + 1 if history else 1


def for_tests(session: Session, switches: Mapping[str, str]) -> Session:
    """``session`` wrapped by the test-only session factory the switches name (:data:`settings.TEST_SESSION`:
    ``module:attr`` or ``path/to/file.py:attr``, called as ``factory(session, **args)``), else itself."""
    spec = switches.get(settings.TEST_SESSION)
    if not spec:
        return session
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py"):
        found = importlib.util.spec_from_file_location(Path(where).stem, where)
        if found is None or found.loader is None:
            raise ImportError(f"{settings.TEST_SESSION}: no module at {where}")
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    args = json.loads(switches.get(settings.TEST_SESSION_ARGS) or "{}")
    return getattr(module, attr)(session, **args)


def run_worker(
    config: Mapping[str, Any], session: Session, switches: Mapping[str, str] | None = None
) -> None:
    """Train the run ``config`` (see :func:`loop_config`) in ``session`` from its checkpoint, if any, to the
    end, reporting every eval (a divergence as its last report, with a divergence record). ``switches``:
    the test-only settings (default: this process's environment, :func:`settings.test_switches`)."""
    session = for_tests(session, settings.test_switches() if switches is None else switches)
    cfg = validate_config(config["config"])
    objective = Objective(*config["objective"])
    warn = config.get("warn", True) and session.rank == 0
    device = session.device()
    training = build_training(
        cfg, device=device, rank=session.rank, world_size=session.world_size, wrap_model=session.wrap_model
    )
    restarts = _resume(training, session, device)
    # Once per worker group: a rank's node does not change while it lives.
    node_ids = rank_node_ids(session) if session.world_size > 1 else []
    session.started(training)
    evaluator = None
    if session.rank == 0:
        with session.local_file(cfg.metrics.extractor) as extractor:  # a sweep's, on storage every node reads
            evaluator = default_evaluator(cfg, device, extractor)
    try:
        # Only a run of one worker may stop between evals: ranks must agree on every collective.
        should_stop = session.should_stop if session.world_size == 1 else None
        for report in run_loop(training, evaluator, objective=objective, should_stop=should_stop):
            metrics = report.metrics  # the history's own entry: what is added here is checkpointed too
            metrics[RESTARTS] = restarts
            if session.world_size > 1:
                metrics["replica_param_spread"] = replica_param_spread(training)
                metrics[WORKER_NODES] = len(set(node_ids))
                metrics[WORKER_NODE_IDS] = ",".join(node_ids)
            _report_eval(session, training, report)
            if warn and turned_bad(last_health(training.history[:-1]), metrics):
                _warn(health_warning(session.name, report.step, metrics, ended=False))
    except DivergedError as err:
        _report_divergence(session, training, err)
        return
    if session.world_size == 1 and session.should_stop():
        return  # told to stop: whoever stopped it has its history and says how it ended
    if warn and training.history and final_status("completed", training.history) == "collapsed":
        last = training.history[-1]
        _warn(health_warning(session.name, int(last["step"]), last, ended=True))


def _report_eval(session: Session, training: Training, report: EvalReport) -> None:
    metrics = report.metrics
    if session.rank != 0:
        session.report(metrics, None, "")
        return

    def write(folder: Path) -> None:
        start = time.perf_counter()
        write_run_state(folder, training.state_dict(), report.samples_of(training), training.config)
        metrics[TIME_CHECKPOINT] = time.perf_counter() - start

    session.report(metrics, write, f"checkpoint_{report.step:08d}")


def _report_divergence(session: Session, training: Training, err: DivergedError) -> None:
    """Every rank sees the same averaged losses, so all of them end at the same eval. Rank 0 attaches a
    divergence record: a run's result is its latest *checkpoint*'s, so without one a diverged run would
    end looking like its last good eval, and a resume would go on from it."""

    def write(folder: Path) -> None:
        write_divergence(folder, err.step, err.metrics, training.history)

    metrics = diverged_metrics(err.step, err.metrics)
    session.report(metrics, write if session.rank == 0 else None, f"checkpoint_{err.step:08d}_diverged")


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
