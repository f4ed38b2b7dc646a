"""`make run`'s process runner: the embedded PostgreSQL, migrations, demo users, then honcho over the Procfile.

This process owns the embedded PostgreSQL (data under var/postgres, kept across runs): it starts it, hands
its URL to every process of the stack, and stops it when the stack has stopped. With DATABASE_URL set,
that server is used instead.

honcho sends SIGTERM to every process group, then SIGKILL after a fixed 5 s. Celery's warm shutdown
(finish the running task, stop beat) and the consumers' "finish the batch, commit, leave the group"
can take longer, so the grace period is raised rather than letting SIGKILL cut them short.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import honcho.manager
from honcho.command import main as honcho_main

ROOT = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 30


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True)


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "logiflow.settings.local")
    if not os.environ.get("DATABASE_URL"):
        sys.path.insert(0, str(ROOT))
        from logiflow.embedded_postgres import database_url

        os.environ["DATABASE_URL"] = database_url(ROOT / "var" / "postgres")
        print(f"run_stack: embedded PostgreSQL at {os.environ['DATABASE_URL']}", flush=True)
    manage("migrate", "--noinput")
    manage("create_demo_users")
    honcho.manager.KILL_WAIT = GRACE_SECONDS
    honcho_main(["start", "-f", str(ROOT / "Procfile"), *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
