"""Run a command in its own process group and pass SIGTERM/SIGINT to its leader only.

A process runner may stop a Procfile entry by signalling its whole process group (honcho did; `make run`'s
supervisord does with `stopasgroup`). Celery's prefork children then die mid-shutdown while the main process
is closing the pool, and the warm shutdown can hang. Behind this wrapper only Celery's main process is
signalled; it stops its children itself. If the wrapper itself is killed (SIGKILL: nothing to forward), the
command is killed too (Linux), so a restarted wrapper never runs beside a leftover worker.
Usage: python scripts/signal_leader.py celery -A logiflow worker ...
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """In the child before exec: SIGKILL when `parent` dies (Linux prctl; a no-op elsewhere)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before prctl took effect
            os._exit(1)


def main(command: list[str]) -> int:
    parent = os.getpid()
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=lambda: die_with(parent))  # noqa: PLW1509

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: signal_leader.py COMMAND [ARGS...]")
    sys.exit(main(sys.argv[1:]))
