"""Long-running workers (relay, consumers): signal-driven graceful stop and reconnect with capped backoff.

A worker is a small object with `setup`, `run_once` and `teardown`, so tests can drive single
iterations without a process; `run_worker` is the loop a management command runs. The restart delay grows
over consecutive failures and resets only after real progress (or a healthy stretch), never on an empty poll.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime
from types import FrameType

from django.conf import settings
from django.db import close_old_connections, connection, reset_queries
from django.utils import timezone

from apps.common.metrics import WORKER_LAST_BATCH
from apps.common.services import heartbeat_beat, heartbeat_remove

logger = logging.getLogger(__name__)


class Worker:
    """Base class: subclasses implement `run_once` and, when they hold connections, `setup`/`teardown`."""

    name = "worker"

    def __init__(self) -> None:
        self.stopping = threading.Event()

    def setup(self) -> None:
        """Open connections; called before the first iteration and again after a failure."""

    def run_once(self) -> bool | None:
        """One iteration; True when it made real progress (e.g. committed messages), False when it did not,
        None when it cannot tell (then only a healthy stretch resets the restart backoff)."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Flush, commit and close; called on stop and after a failure, before reconnecting."""

    def stop(self) -> None:
        self.stopping.set()


class Backoff:
    """Exponential backoff: the delay doubles after each failure up to `maximum`.

    It resets on real progress, or once the worker has stayed healthy for `healthy_after` seconds. An
    iteration that merely did not fail (an empty poll right after re-joining the group) proves nothing: a
    poison message fails again on the next read, and resetting there would restart at `initial` forever.
    """

    def __init__(self, *, initial: float = 0.5, maximum: float = 30.0, healthy_after: float = 60.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.healthy_after = healthy_after
        self.delay = 0.0
        self._resumes_at = 0.0

    def failed(self) -> float:
        self.delay = min(self.maximum, self.delay * 2 if self.delay else self.initial)
        return self.delay

    def resumed(self) -> None:
        """The worker restarts after its delay: a healthy stretch counts from here."""
        self._resumes_at = time.monotonic()

    def succeeded(self, *, progress: bool = True) -> None:
        if progress or time.monotonic() - self._resumes_at >= self.healthy_after:
            self.delay = 0.0


class WorkerGaveUp(SystemExit):
    """Every iteration failed for longer than the worker's give-up time: exit non-zero, for a supervisor to
    start a fresh process (and for monitoring to see the restarts)."""

    EXIT_CODE = 3


def run_worker(
    worker: Worker, *, backoff: Backoff | None = None, install_signals: bool = True,
    give_up_after: float | None = None,
) -> None:
    """Run `worker` until SIGTERM/SIGINT: the current iteration finishes, then `teardown` flushes and commits.
    With `give_up_after`, a worker whose iterations all failed for that many seconds raises WorkerGaveUp."""
    backoff = backoff or Backoff()
    if install_signals:
        _install_stop_signals(worker)
    ready = False
    failing_since: float | None = None
    try:
        while not worker.stopping.is_set():
            try:
                if not ready:
                    worker.setup()
                    ready = True
                reset_queries()
                backoff.succeeded(progress=bool(worker.run_once()))
                failing_since = None
            except Exception:
                failing_since = failing_since or time.monotonic()
                if give_up_after is not None and time.monotonic() - failing_since >= give_up_after:
                    logger.exception("%s kept failing for %.0fs; exiting for the supervisor to restart it",
                                     worker.name, time.monotonic() - failing_since)
                    raise WorkerGaveUp(WorkerGaveUp.EXIT_CODE) from None
                delay = backoff.failed()
                logger.exception("%s failed; reconnecting in %.1fs", worker.name, delay)
                ready = False
                _safe_teardown(worker)
                close_old_connections()
                worker.stopping.wait(delay)
                backoff.resumed()
    finally:
        if ready:
            _safe_teardown(worker)
        logger.info("%s stopped", worker.name)


def _safe_teardown(worker: Worker) -> None:
    try:
        worker.teardown()
    except Exception:
        logger.exception("%s teardown failed", worker.name)


def _install_stop_signals(worker: Worker) -> None:
    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if worker.stopping.is_set():
            raise SystemExit(f"{worker.name}: second signal {signum}, exiting now")
        logger.info("%s: signal %s received, stopping after the current batch", worker.name, signum)
        worker.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


class HeartbeatRecorder:
    """A worker's heartbeat row (apps.common.models.Heartbeat), written at most every HEARTBEAT_INTERVAL_S.

    A heartbeat that cannot be written is logged, never raised: liveness reporting must not stop the work
    (a database outage shows up in the work itself, and as a silent heartbeat).
    """

    def __init__(self, kind: str, group: str = "") -> None:
        self.kind = kind
        self.group = group
        self.started_at = timezone.now()
        self.last_batch_at: datetime | None = None
        self._beaten_at: float | None = None

    def progress(self) -> None:
        """The worker moved messages just now."""
        self.last_batch_at = timezone.now()
        WORKER_LAST_BATCH.labels(self.kind, self.group).set(self.last_batch_at.timestamp())

    def due(self) -> bool:
        return self._beaten_at is None or time.monotonic() - self._beaten_at >= settings.HEARTBEAT_INTERVAL_S

    def beat(self, *, partitions: list[dict] | None = None, force: bool = False) -> None:
        if not force and not self.due():
            return
        self._beaten_at = time.monotonic()
        try:
            heartbeat_beat(kind=self.kind, group=self.group, started_at=self.started_at,
                           last_batch_at=self.last_batch_at, partitions=partitions)
        except Exception:  # noqa: BLE001 - see the class docstring
            logger.warning("%s[%s]: heartbeat not recorded", self.kind, self.group, exc_info=True)
            connection.close()

    def remove(self) -> None:
        try:
            heartbeat_remove(kind=self.kind, group=self.group)
        except Exception:  # noqa: BLE001 - a stopping worker must stop, whatever the database says
            logger.warning("%s[%s]: heartbeat not removed", self.kind, self.group, exc_info=True)
            connection.close()
