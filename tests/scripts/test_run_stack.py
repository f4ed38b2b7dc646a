"""`make run`'s stack (scripts/run_stack.py) under fault: a killed worker comes back and nothing else stops.

The stack runs as `make run` starts it, on the test session's database and broker (LOGIFLOW_RUN_BROKER=external),
with its state in a temporary var/ folder and the web on a free port. Processes are found by their command lines
under run_stack's process tree (Linux /proc), whatever runs them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from apps.devstack.process import free_port
from tests.support.processes import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_topics"),
    pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds processes through Linux /proc"),
    pytest.mark.timeout(180),
]

# Each Procfile process, told by its arguments (`python manage.py consume invoicing …`).
PROCESSES: dict[str, Callable[[list[str]], bool]] = {
    "web": lambda argv: "runserver" in argv,
    "relay": lambda argv: "relay_outbox" in argv,
    "invoicing": lambda argv: argv[2:4] == ["consume", "invoicing"],
    "routing": lambda argv: argv[2:4] == ["consume", "routing"],
    "celery": lambda argv: len(argv) > 1 and argv[1].endswith("signal_leader.py"),
    "beat": lambda argv: len(argv) > 1 and argv[1].endswith("celery") and "beat" in argv,
}
WORKERS = ("relay", "invoicing", "routing", "celery", "beat")


def argv_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, …)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    web_port: int
    log: Path

    def pids(self) -> dict[str, int]:
        """The Procfile processes found now, by name (one each; a second would be a leftover)."""
        found: dict[str, list[int]] = {}
        for pid in descendants(self.process.pid):
            argv = argv_of(pid)
            for name, matches in PROCESSES.items():
                if argv and "python" in Path(argv[0]).name and matches(argv) and alive(pid):
                    found.setdefault(name, []).append(pid)
        # A child of a matched process with its parent's command line is that process forking (a child between
        # fork and exec): not a second one.
        found = {name: [pid for pid in pids if parent_of(pid) not in pids] for name, pids in found.items()}
        assert all(len(pids) == 1 for pids in found.values()), f"two processes for one name: {found}"
        return {name: pids[0] for name, pids in found.items()}

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def explain(self) -> str:
        exited = "" if self.process.poll() is None else f"run_stack exited with {self.process.returncode}; "
        return f"{exited}processes {self.pids()}; log tail:\n{self.log.read_text(errors='replace')[-4000:]}"


@pytest.fixture
def stack(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[RunningStack]:
    web_port = free_port()
    env = {
        **subprocess_env,
        "DJANGO_SETTINGS_MODULE": "logiflow.settings.local",  # as `make run`, on the test database
        "LOGIFLOW_RUN_BROKER": "external",
        "LOGIFLOW_VAR_DIR": str(tmp_path / "var"),
        "LOGIFLOW_WEB_PORT": str(web_port),
        "RELAY_METRICS_PORT": "0",
        "INVOICING_METRICS_PORT": "0",
        "ROUTING_METRICS_PORT": "0",
    }
    log = tmp_path / "run_stack.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "scripts/run_stack.py"], cwd=settings.BASE_DIR, env=env, stdout=output,
            stderr=subprocess.STDOUT,
        )
    running = RunningStack(process, web_port, log)
    try:
        yield running
    finally:
        leftovers = descendants(process.pid)
        if process.poll() is None:
            process.kill()
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()


def test_a_killed_worker_comes_back_while_the_rest_keeps_serving_and_sigterm_stops_everything(
    stack: RunningStack,
) -> None:
    wait_until(lambda: stack.healthy() and set(stack.pids()) == set(PROCESSES), timeout=120, explain=stack.explain)

    for name in WORKERS:
        before = stack.pids()
        killed = [before[name], *descendants(before[name])]  # Celery's main process and pool too
        os.kill(before[name], signal.SIGKILL)

        def back() -> bool:
            assert stack.process.poll() is None, f"killing {name} stopped the stack: {stack.explain()}"
            return stack.pids().get(name, before[name]) != before[name]

        wait_until(back, timeout=60, explain=lambda: f"{name} did not come back: {stack.explain()}")
        after = stack.pids()
        assert stack.healthy(), f"/healthz does not answer after {name} was killed: {stack.explain()}"
        assert {other: after.get(other) for other in before if other != name} == {
            other: pid for other, pid in before.items() if other != name
        }, f"killing {name} touched another process"
        wait_until(lambda: not any(alive(pid) for pid in killed), timeout=10,
                   explain=lambda: f"{name}'s old processes left running: {[p for p in killed if alive(p)]}")

    everything = [pid for pid in descendants(stack.process.pid) if alive(pid)]
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=90) == 0, stack.explain()
    wait_until(lambda: not any(alive(pid) for pid in everything), timeout=10,
               explain=lambda: f"left running: {[(pid, argv_of(pid)) for pid in everything if alive(pid)]}")
