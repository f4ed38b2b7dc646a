"""`make run`'s process runner: the embedded PostgreSQL, migrations, demo users, then honcho over the Procfile.

This process owns the embedded PostgreSQL (data under var/postgres, kept across runs): it starts it, hands
its URL to every process of the stack, and stops it when the stack has stopped. With DATABASE_URL set,
that server is used instead.

LOGIFLOW_RUN_BROKER=external runs the stack on the Kafka at KAFKA_BOOTSTRAP_SERVERS (e.g. `make kafka`'s)
instead of the Procfile's embedded `broker` process: the topics are created first, then every other process starts.

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
from honcho.environ import parse_procfile

ROOT = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 30


def var_dir() -> Path:
    """`make run`'s local state (LOGIFLOW_VAR_DIR, default var/), the folders its processes write into made."""
    var = Path(os.environ.get("LOGIFLOW_VAR_DIR") or ROOT / "var")
    for folder in ("media", "celery"):
        (var / folder).mkdir(parents=True, exist_ok=True)
    return var


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True)


def processes() -> list[str]:
    """The Procfile entries to start: all of them (honcho's default) or, on an external Kafka, all but `broker`."""
    broker = os.environ.get("LOGIFLOW_RUN_BROKER", "embedded")
    if broker == "embedded":
        return []
    if broker != "external":
        raise SystemExit(f"LOGIFLOW_RUN_BROKER={broker!r}: expected embedded (default) or external")
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        raise SystemExit("LOGIFLOW_RUN_BROKER=external needs KAFKA_BOOTSTRAP_SERVERS (make kafka: 127.0.0.1:9092)")
    names = parse_procfile((ROOT / "Procfile").read_text()).processes
    return [name for name in names if name != "broker"]


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "logiflow.settings.local")
    # The Procfile's `python` is this interpreter (the venv's), however run_stack was started.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    var = var_dir()
    names = processes()
    if not os.environ.get("DATABASE_URL"):
        sys.path.insert(0, str(ROOT))
        from logiflow.embedded_postgres import database_url

        os.environ["DATABASE_URL"] = database_url(var / "postgres")
        print(f"run_stack: embedded PostgreSQL at {os.environ['DATABASE_URL']}", flush=True)
    manage("migrate", "--noinput")
    manage("create_demo_users")
    if names:
        manage("kafka_topics")  # fails here, before anything starts, when that Kafka is not reachable
    honcho.manager.KILL_WAIT = GRACE_SECONDS
    honcho_main(["start", "-f", str(ROOT / "Procfile"), *argv, *names])


if __name__ == "__main__":
    main(sys.argv[1:])
