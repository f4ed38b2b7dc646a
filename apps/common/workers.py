"""Long-running workers (relay, consumers): signal-driven graceful stop and reconnect with capped backoff.

A worker is a small object with `setup`, `run_once` and `teardown`, so tests can drive single
iterations without a process; `run_worker` is the loop a management command runs.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from django.db import close_old_connections, reset_queries

logger = logging.getLogger(__name__)


class Worker:
    """Base class: subclasses implement `run_once` and, when they hold connections, `setup`/`teardown`."""

    name = "worker"

    def __init__(self) -> None:
        self.stopping = threading.Event()

    def setup(self) -> None:
        """Open connections; called before the first iteration and again after a failure."""

    def run_once(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """Flush, commit and close; called on stop and after a failure, before reconnecting."""

    def stop(self) -> None:
        self.stopping.set()


class Backoff:
    """Exponential backoff: the delay doubles after each failure up to `maximum`, resets on success."""

    def __init__(self, *, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(self.maximum, self.delay * 2 if self.delay else self.initial)
        return self.delay

    def succeeded(self) -> None:
        self.delay = 0.0


def run_worker(worker: Worker, *, backoff: Backoff | None = None, install_signals: bool = True) -> None:
    """Run `worker` until SIGTERM/SIGINT: the current iteration finishes, then `teardown` flushes and commits."""
    backoff = backoff or Backoff()
    if install_signals:
        _install_stop_signals(worker)
    ready = False
    try:
        while not worker.stopping.is_set():
            try:
                if not ready:
                    worker.setup()
                    ready = True
                reset_queries()
                worker.run_once()
                backoff.succeeded()
            except Exception:
                delay = backoff.failed()
                logger.exception("%s failed; reconnecting in %.1fs", worker.name, delay)
                ready = False
                _safe_teardown(worker)
                close_old_connections()
                worker.stopping.wait(delay)
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
