"""`run_worker`'s restart backoff: it grows over consecutive failures and resets only after real progress
(or after the worker stayed healthy for a while), so a poison message cannot restart a consumer every 0.5 s."""

from __future__ import annotations

import threading
import time

import pytest

from apps.common.workers import Backoff, Worker, run_worker


@pytest.fixture(autouse=True)
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failure `run_worker` closes broken database connections. These workers have none, and once an
    earlier test opened the session's connection, touching it here is refused (no django_db mark)."""
    monkeypatch.setattr("apps.common.workers.close_old_connections", lambda: None)


class RecordingStop(threading.Event):
    """The worker's stop flag; records each restart delay instead of sleeping it."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.delays.append(timeout or 0.0)
        return self.is_set()


class Scripted(Worker):
    """Each iteration does what the script says: fail, an idle poll (no progress), or progress."""

    name = "scripted"

    def __init__(self, script: list[str], *, idle_s: float = 0.0) -> None:
        super().__init__()
        self.stopping = RecordingStop()
        self.script = iter(script)
        self.idle_s = idle_s

    def run_once(self) -> bool:
        step = next(self.script, None)
        if step is None:
            self.stop()
            return False
        if step == "fail":
            raise RuntimeError("poison")
        if step == "slow_fail":  # a failure that took a while (a connection refused after its timeout)
            time.sleep(0.05)
            raise RuntimeError("still refused")
        time.sleep(self.idle_s if step == "idle" else 0)
        return step == "progress"


def delays(worker: Scripted, backoff: Backoff) -> list[float]:
    run_worker(worker, backoff=backoff, install_signals=False)
    return worker.stopping.delays  # type: ignore[attr-defined]


def test_consecutive_failures_separated_by_empty_polls_give_growing_delays_up_to_the_cap() -> None:
    # A poison message: re-join, an empty poll, read the message again, fail again...
    worker = Scripted(["fail", "idle"] * 5 + ["fail"])
    assert delays(worker, Backoff(initial=0.5, maximum=4.0, healthy_after=60)) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_real_progress_resets_the_backoff() -> None:
    worker = Scripted(["fail", "fail", "progress", "fail"])
    assert delays(worker, Backoff(initial=0.5, maximum=4.0, healthy_after=60)) == [0.5, 1.0, 0.5]


def test_staying_healthy_for_a_while_resets_the_backoff_without_progress() -> None:
    worker = Scripted(["fail", "fail", "idle", "idle", "fail"], idle_s=0.06)
    assert delays(worker, Backoff(initial=0.5, maximum=4.0, healthy_after=0.1)) == [0.5, 1.0, 0.5]


def test_a_worker_that_keeps_failing_past_its_give_up_time_exits_non_zero_for_its_supervisor() -> None:
    worker = Scripted(["slow_fail"] * 200)

    with pytest.raises(SystemExit) as exited:
        run_worker(worker, backoff=Backoff(initial=0.01, maximum=0.01), install_signals=False, give_up_after=0.2)

    assert exited.value.code not in (0, None)
    assert next(worker.script, None) is not None  # it gave up long before the script ran out


def test_failures_separated_by_good_iterations_never_add_up_to_giving_up() -> None:
    worker = Scripted(["slow_fail", "idle"] * 10)

    run_worker(worker, backoff=Backoff(initial=0.01, maximum=0.01), install_signals=False, give_up_after=1.0)

    assert next(worker.script, None) is None  # it ran the whole script, then stopped
