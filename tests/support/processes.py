"""Real worker processes (`manage.py relay_outbox`, `manage.py consume …`) for end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings


class Processes:
    """Starts management commands on the test database and broker; kills whatever a test left running."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{args[0]}-{len(self.started)}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env={**self.env, **(env or {})},
            stdout=log, stderr=subprocess.STDOUT,
        )
        process.log_path = Path(log.name)  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    __call__ = start

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


def log_of(process: subprocess.Popen[bytes]) -> str:
    return process.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and the worker must finish its batch, commit and exit 0."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_of(process)[-3000:]


def wait_until(condition: Callable[[], bool], *, timeout: float = 60.0, explain: Callable[[], str] | str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {timeout}s: {explain() if callable(explain) else explain}")
        time.sleep(0.2)
