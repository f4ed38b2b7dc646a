"""Run a command in its own process group and pass SIGTERM/SIGINT to its leader only.

honcho stops a Procfile entry by signalling its whole process group. Celery's prefork children
then die mid-shutdown while the main process is closing the pool, and the warm shutdown can
hang. Behind this wrapper only Celery's main process is signalled; it stops its children itself.
Usage: python scripts/signal_leader.py celery -A logiflow worker ...
"""

from __future__ import annotations

import signal
import subprocess
import sys
from types import FrameType


def main(command: list[str]) -> int:
    child = subprocess.Popen(command, start_new_session=True)

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: signal_leader.py COMMAND [ARGS...]")
    sys.exit(main(sys.argv[1:]))
