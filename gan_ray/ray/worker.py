"""The Ray sessions of the run driver (:mod:`gan_ray.training.driver`): where a run trains under Ray.

A Ray Train worker (:class:`TrainSession`): one of N DDP ranks, started by a TorchTrainer. A Tune trial
process itself (:class:`TuneSession`): a sweep's single-worker trial, which then needs no Train
controller and no worker group of its own (their start-up was most of a short trial's time:
bench/RESULTS.md). Either way a report is the eval's metrics and, from rank 0, a run-state folder that
Ray persists as the checkpoint to resume from.
"""

from __future__ import annotations

import tempfile
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from gan_ray.ray.storage import local_file
from gan_ray.training.driver import FolderWriter, run_worker
from gan_ray.training.loop import Training


class _RaySession:
    """What both Ray sessions share: node ids, remote files, a report's folder in a temporary one."""

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def local_file(self, uri: str | None) -> AbstractContextManager[str | None]:
        return local_file(uri)  # the sweep's extractor, on storage every node reads

    def started(self, training: Training) -> None:
        pass

    def should_stop(self) -> bool:
        return False  # a Train worker group is ended by its controller, all ranks together

    def report(self, metrics: dict[str, Any], write: FolderWriter | None, dir_name: str) -> None:
        if write is None:
            self._report(metrics, None, dir_name)
            return
        # Ray copies the folder to its storage in the report: it is only needed until then.
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp))
            self._report(metrics, tmp, dir_name)

    def _report(self, metrics: dict[str, Any], folder: str | None, dir_name: str) -> None:
        raise NotImplementedError


class TrainSession(_RaySession):
    """A Ray Train worker's session: a DDP rank whose models ``prepare_model`` wraps."""

    def __init__(self):
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.name = ctx.get_experiment_name()

    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def wrap_model(self, module: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(module, move_to_device=self.device())

    def checkpoint(self):
        """The run's latest checkpoint: after a worker-group restart (``scaling.max_failures``), or a
        resumed run's (the driver cleared the run's storage unless it resumes)."""
        import ray.train

        return ray.train.get_checkpoint()

    def _report(self, metrics: dict[str, Any], folder: str | None, dir_name: str) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=dir_name if folder else None)


class TuneSession(_RaySession):
    """A Tune trial's own process as the one and only worker: no DDP, Tune keeps the checkpoints."""

    rank, world_size = 0, 1

    def __init__(self, use_gpu: bool):
        from ray import tune

        self.name = tune.get_context().get_trial_name()
        self.use_gpu = use_gpu
        self._stop = _tune_stop_event()

    def should_stop(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def device(self) -> torch.device:
        # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU (a share of one, with fractional GPUs).
        return torch.device("cuda", 0) if self.use_gpu and torch.cuda.is_available() else torch.device("cpu")

    def wrap_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def checkpoint(self):
        from ray import tune

        return tune.get_checkpoint()

    def _report(self, metrics: dict[str, Any], folder: str | None, dir_name: str) -> None:
        from ray import tune

        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)


def _tune_stop_event() -> threading.Event | None:
    """The event Tune sets when it ends this trial (to reuse its process, or to stop the actor).

    Tune's reports from a function trainable are synchronous (Ray 2.60): a trial ASHA stops is parked
    in its report, and ends there as soon as Tune tells it. A stop that comes while the thread trains
    (Tune stops trials between reports too: a sweep-wide stop, the time budget) reached it only at its
    next report, an eval interval later; with this event it ends within a step. Ray's internal session
    (no public API says "stop"): where a Ray version lacks it, None, and the thread ends as before.
    """
    try:
        from ray.train._internal.session import get_session

        event = getattr(get_session(), "stop_event", None)
    except ImportError:
        return None
    return event if isinstance(event, threading.Event) else None


def train_worker(config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs."""
    run_worker(config, TrainSession())
