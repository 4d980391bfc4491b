"""Writes runs' records to MLflow from background threads, so that a sweep's driver (Tune's scheduling
loop) only queues them: batched per run, retried through a tracking outage, bounded in memory, and
what is given up is counted and tagged on its run (``gan_ray.tracking_lost``), never dropped silently.

:class:`TrackingWriter` owns the threads; its :attr:`~TrackingWriter.client` is a drop-in for the
``MlflowClient`` an :class:`~gan_ray.tracking.run.MlflowRun` logs through. Reads and ``create_run``
stay synchronous (their answers are needed now); every write returns at once.
"""

from __future__ import annotations

import collections
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan_ray import settings
from gan_ray.tracking.store import TAG_LOST, make_client

if TYPE_CHECKING:
    from mlflow import MlflowClient

_log = logging.getLogger(__name__)

#: MLflow's limits on one ``log_batch`` (mlflow.utils.validation).
MAX_BATCH_METRICS, MAX_BATCH_PARAMS, MAX_BATCH_TAGS, MAX_BATCH_TOTAL = 1000, 100, 100, 1000

#: Texts of the errors a store gives while it is overloaded or away: worth another try, not a lost record.
TRANSIENT_TEXTS = (
    "QueuePool limit",
    "database is locked",
    "API request to",  # MLflow's wrapper of connection errors, timeouts and exhausted HTTP retries
    "Connection refused",
    "Max retries exceeded",
    "timed out",
    "TEMPORARILY_UNAVAILABLE",
    "INTERNAL_ERROR",
    "could not connect to server",
    "server closed the connection",
)


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` says the store is busy or unreachable (retry), rather than that the record is bad."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    status = getattr(err, "get_http_status_code", lambda: None)()
    if isinstance(status, int) and status >= 500:
        return True
    text = f"{type(err).__name__}: {err}"
    return any(t in text for t in TRANSIENT_TEXTS)


def retrying(fn: Callable[[], Any], deadline: float, what: str) -> Any:
    """``fn()``, tried again with exponential backoff on transient errors until ``deadline`` (monotonic);
    the last error is raised once it has passed, a non-transient one at once."""
    delay = 0.5
    while True:
        try:
            return fn()
        except Exception as err:
            left = deadline - time.monotonic()
            if not is_transient(err) or left <= 0:
                raise
            _log.info("tracking: %s failed (%s); retrying in %.1f s", what, err, min(delay, left))
            time.sleep(min(delay, left))
            delay = min(delay * 2, 30.0)


@dataclass
class _Op:
    """One queued write of one run: a batch of metrics/params/tags, or a call (an image, a file, the end)."""

    run_id: str
    kind: str  # what a lost op counts as: "metrics", "params", "tags", "images", "artifacts", "end"
    metrics: list = field(default_factory=list)
    params: list = field(default_factory=list)
    tags: list = field(default_factory=list)
    call: Callable[[MlflowClient], Any] | None = None
    queued: float = field(default_factory=time.monotonic)

    @property
    def records(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags) or 1


class TrackingWriter:
    """Background writers for many runs at once (see the module docstring).

    A run's writes keep their order (each run has one thread); runs spread over ``threads`` threads, so a
    slow upload of one run does not hold up the others. A write that keeps failing with a transient error
    is retried until ``retry_s`` after it was queued (``$GAN_RAY_TRACKING_RETRY_S``, default 600 s: more
    than a 150 s server restart), then given up and counted. At most ``max_pending`` writes wait
    (``$GAN_RAY_TRACKING_MAX_PENDING``); a write beyond that is given up at once, except a run's end,
    which is never dropped. :meth:`flush` waits until everything queued is written or given up.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        threads: int = 4,
        retry_s: float | None = None,
        max_pending: int | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.retry_s = settings.tracking_retry_s() if retry_s is None else retry_s
        self.max_pending = settings.tracking_max_pending() if max_pending is None else max_pending
        self._lock = threading.Condition()
        self._queues: list[collections.deque[_Op]] = [collections.deque() for _ in range(threads)]
        self._pending = 0
        self._closed = False
        self._lost: dict[str, collections.Counter] = {}  # run -> kind -> records given up
        self._tagged: dict[str, dict[str, int]] = {}  # run -> the counts its lost tag says
        self.written = 0  # records written, for a bench to read
        self._unreachable = False  # the latest write failed for good with a transient error
        self.client = BufferedClient(self, make_client(tracking_uri))
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"gan_ray-tracking-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def __reduce__(self):
        # Tune pickles its callbacks (and so a sweep's recorder) with the experiment's state: a copy
        # is a fresh writer to the same store, not the queue and threads of this one.
        return _fresh_writer, (self.tracking_uri, len(self._queues), self.retry_s, self.max_pending)

    def lost(self) -> dict[str, dict[str, int]]:
        """Records given up so far: run id -> kind -> count."""
        with self._lock:
            return {run: dict(c) for run, c in self._lost.items()}

    def submit(self, op: _Op) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the tracking writer is closed")
            if self._pending >= self.max_pending and op.kind != "end":
                self._count_lost(op, "the tracking buffer is full")
                return
            self._queues[hash(op.run_id) % len(self._queues)].append(op)
            self._pending += 1
            self._lock.notify_all()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued write is written or given up; then tag the runs that lost records and
        have not been tagged yet. False if ``timeout_s`` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left)
        for run_id in list(self.lost()):
            self._tag_lost(self.client.client, run_id)
        untagged = {r: c for r, c in self.lost().items() if self._tagged.get(r) != c}
        if untagged:
            _log.warning(
                "tracking: records given up and not tagged on their runs (the store is unreachable): %s",
                json.dumps(untagged),
            )
        return True

    def close(self, timeout_s: float | None = None) -> None:
        """:meth:`flush`, then stop the threads."""
        self.flush(timeout_s)
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def _work(self, shard: int) -> None:
        client = make_client(self.tracking_uri)
        queue = self._queues[shard]
        while True:
            with self._lock:
                while not queue and not self._closed:
                    self._lock.wait()
                if not queue:
                    return
                ops = list(queue)
                queue.clear()
            by_run: dict[str, list[_Op]] = collections.defaultdict(list)
            for op in ops:
                by_run[op.run_id].append(op)
            for run_id, run_ops in by_run.items():
                self._write_run(client, run_id, run_ops)
            with self._lock:
                self._pending -= len(ops)
                self._lock.notify_all()

    def _write_run(self, client: MlflowClient, run_id: str, ops: list[_Op]) -> None:
        """One run's queued writes in order, consecutive batches merged into as few requests as MLflow takes."""
        i, any_written = 0, False
        while i < len(ops):
            if ops[i].call is not None:
                op = ops[i]
                any_written |= self._attempt(op, lambda op=op: op.call(client))  # type: ignore[misc]
                i += 1
                continue
            merged: list[_Op] = []
            while i < len(ops) and ops[i].call is None and _fits(merged, ops[i]):
                merged.append(ops[i])
                i += 1
            if not merged:  # one batch over the limits on its own (the callers split theirs): as it is
                merged, i = [ops[i]], i + 1
            any_written |= self._write_batch(client, run_id, merged)
        if any_written and run_id in self._lost:
            self._tag_lost(client, run_id)

    def _write_batch(self, client: MlflowClient, run_id: str, ops: list[_Op]) -> bool:
        metrics = [m for op in ops for m in op.metrics]
        # One batch may not name a param or tag twice: the later value is the one the run would keep.
        params = list({p.key: p for op in ops for p in op.params}.values())
        tags = list({t.key: t for op in ops for t in op.tags}.values())
        merged = _Op(run_id, "metrics", metrics, params, tags, queued=min(op.queued for op in ops))

        def write() -> None:
            client.log_batch(run_id, metrics=metrics, params=params, tags=tags)

        if self._attempt(merged, write, count=False):
            return True
        for op in ops:
            self._count_lost(op, "gave up")
        return False

    def _attempt(self, op: _Op, write: Callable[[], Any], count: bool = True) -> bool:
        deadline = op.queued + self.retry_s
        try:
            if self._unreachable and time.monotonic() >= deadline:
                # One try would cost MLflow's own HTTP retries (minutes) per write: a backlog of them
                # would hold the sweep's end for hours. The first write that gets through clears it.
                raise ConnectionError("the tracking store is still unreachable, past the retry window")
            retrying(write, deadline, f"{op.kind} of run {op.run_id}")
        except Exception as err:
            self._unreachable = is_transient(err)
            if count:
                self._count_lost(op, f"{type(err).__name__}: {err}")
            else:
                _log.warning("tracking: %s of run %s given up: %s", op.kind, op.run_id, err)
            return False
        self._unreachable = False
        with self._lock:
            self.written += op.records
        return True

    def _count_lost(self, op: _Op, why: str) -> None:
        kinds = {"metrics": len(op.metrics), "params": len(op.params), "tags": len(op.tags)}
        counts = {k: n for k, n in kinds.items() if n} or {op.kind: 1}
        with self._lock:
            first = op.run_id not in self._lost
            self._lost.setdefault(op.run_id, collections.Counter()).update(counts)
        if first:  # one line per run: an outage must not flood the console
            _log.warning(
                "tracking: records of run %s given up (%s); they will be tagged %s", op.run_id, why, TAG_LOST
            )

    def _tag_lost(self, client: MlflowClient, run_id: str) -> None:
        """One try at the ``gan_ray.tracking_lost`` tag: a store that is back takes it, the next write retries."""
        with self._lock:
            counts = dict(self._lost.get(run_id, {}))
        if not counts or self._tagged.get(run_id) == counts:
            return
        try:
            client.set_tag(run_id, TAG_LOST, json.dumps(counts, sort_keys=True))
        except Exception as err:
            _log.info("tracking: the lost-records tag of run %s not written yet: %s", run_id, err)
            return
        self._tagged[run_id] = counts


def _fresh_writer(tracking_uri: str, threads: int, retry_s: float, max_pending: int) -> TrackingWriter:
    return TrackingWriter(tracking_uri, threads=threads, retry_s=retry_s, max_pending=max_pending)


def _fits(merged: list[_Op], op: _Op) -> bool:
    metrics = sum(len(o.metrics) for o in merged) + len(op.metrics)
    params = sum(len(o.params) for o in merged) + len(op.params)
    tags = sum(len(o.tags) for o in merged) + len(op.tags)
    return (
        metrics <= MAX_BATCH_METRICS
        and params <= MAX_BATCH_PARAMS
        and tags <= MAX_BATCH_TAGS
        and metrics + params + tags <= MAX_BATCH_TOTAL
    )


class BufferedClient:
    """The ``MlflowClient`` methods a run logs through, queued on a :class:`TrackingWriter`; anything
    else (reads) goes straight to the wrapped client, and ``create_run`` with the writer's retries."""

    def __init__(self, writer: TrackingWriter, client: MlflowClient):
        self.writer, self.client = writer, client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def create_run(self, *args: Any, **kwargs: Any):
        deadline = time.monotonic() + self.writer.retry_s
        return retrying(lambda: self.client.create_run(*args, **kwargs), deadline, "create_run")

    def log_batch(
        self, run_id: str, metrics: Iterable = (), params: Iterable = (), tags: Iterable = ()
    ) -> None:
        metrics, params, tags = list(metrics), list(params), list(tags)
        kind = "metrics" if metrics else "params" if params else "tags"
        self.writer.submit(_Op(run_id, kind, metrics, params, tags))

    def log_metric(self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int = 0):
        from mlflow.entities import Metric

        now = timestamp or int(time.time() * 1000)
        self.log_batch(run_id, metrics=[Metric(key, float(value), now, step or 0)])

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        from mlflow.entities import Param

        self.log_batch(run_id, params=[Param(key, str(value))])

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        from mlflow.entities import RunTag

        self.log_batch(run_id, tags=[RunTag(key, str(value))])

    def log_image(self, run_id: str, image: Any, key: str, step: int) -> None:
        copy = image.copy()  # the caller's file closes once this returns
        self._call(run_id, "images", lambda c: c.log_image(run_id, copy, key=key, step=step))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._call(run_id, "artifacts", lambda c: c.log_text(run_id, text, artifact_file))

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        name, data = Path(local_path).name, Path(local_path).read_bytes()  # the file may be temporary

        def upload(client: MlflowClient) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / name).write_bytes(data)
                client.log_artifact(run_id, str(Path(tmp) / name), artifact_path)

        self._call(run_id, "artifacts", upload)

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        end_time = end_time or int(time.time() * 1000)  # when it ended, not when the queue got to it
        self._call(run_id, "end", lambda c: c.set_terminated(run_id, status, end_time))

    def _call(self, run_id: str, kind: str, call: Callable[[MlflowClient], Any]) -> None:
        self.writer.submit(_Op(run_id, kind, call=call))
