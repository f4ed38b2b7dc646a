"""Set-up shared by the benchmarks: their own database and broker, Django configured for them, figures out.

A benchmark calls `environment(...)` once; it yields the bootstrap servers and the database URL and
leaves Django set up against them. Figures are printed one per line as `name=value`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BROKER_PIDS: list[int] = []  # the broker process this run started (none for KAFKA_BOOTSTRAP_SERVERS): its CPU time


def database_url(name: str, *, preload: tuple[str, ...] = (), restart_settings: tuple[str, ...] = ()) -> str:
    """DATABASE_URL's server with the benchmark's own database (default: a throwaway embedded PostgreSQL).

    The database is `name` unless BENCH_DATABASE_NAME is set: two people benchmarking on one server
    set it so their runs (which truncate and vacuum the outbox) do not share a database.
    """
    sys.path.insert(0, str(ROOT))
    from logiflow.embedded_postgres import throwaway_database_url, with_database

    base = os.environ.get("DATABASE_URL") or throwaway_database_url(preload=preload, restart_settings=restart_settings)
    if not urlsplit(base).scheme.startswith("postgres"):
        raise SystemExit("benchmarks need PostgreSQL: set DATABASE_URL=postgres://...")
    return with_database(base, os.environ.get("BENCH_DATABASE_NAME") or name)


def create_database(url: str) -> None:
    """Create the database if missing and migrate it (as a subprocess, before Django is set up here)."""
    import psycopg

    from logiflow.embedded_postgres import with_database

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        name = urlsplit(url).path.lstrip("/")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    run_manage(["migrate", "--noinput", "-v0"], env=worker_env(url, ""))


def worker_env(url: str, bootstrap: str, **extra: str) -> dict[str, str]:
    from apps.devstack.tansu import WORKER_ENVIRONMENT

    on_tansu = broker_kind() == "tansu" and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    return {
        **(WORKER_ENVIRONMENT if on_tansu else {}),
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "logiflow.settings.local",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run_manage(args: Sequence[str], *, env: dict[str, str]) -> None:
    subprocess.run([PYTHON, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=True)


def start_manage(
    args: Sequence[str], *, env: dict[str, str], log: Path, root: Path = ROOT
) -> subprocess.Popen[bytes]:
    """A long-running process of the checkout `root` as its own process, output to `log`.

    `args` are a management command's (`["relay_outbox"]`), or a whole command line after the interpreter when
    they start with `-m` or a script (`["-m", "pyinstrument", ..., "manage.py", "relay_outbox"]`,
    `["bench/refusing_relay.py", "invoicing.events"]`).
    """
    out = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    whole = bool(args) and (args[0] == "-m" or args[0].endswith(".py"))
    argv = list(args) if whole else [str(root / "manage.py"), *args]
    return subprocess.Popen([PYTHON, *argv], env=env, cwd=root, stdout=out, stderr=out)


def stop(process: subprocess.Popen[bytes], *, timeout: float = 30.0) -> int:
    process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def broker_kind() -> str:
    """BENCH_BROKER: `tansu` (default, the embedded broker) or `kafka` (Apache Kafka from var/kafka/lib)."""
    kind = os.environ.get("BENCH_BROKER", "tansu")
    if kind not in ("tansu", "kafka"):
        raise SystemExit(f"BENCH_BROKER={kind!r}: expected tansu or kafka")
    return kind


@contextmanager
def broker(log_dir: Path) -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a fresh broker of BENCH_BROKER's kind for this run."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    sys.path.insert(0, str(ROOT))
    from apps.devstack.apache_kafka import ApacheKafkaBroker
    from apps.devstack.process import free_port
    from apps.devstack.tansu import EmbeddedBroker

    if broker_kind() == "kafka":
        data_dir = log_dir / "kafka-data"
        shutil.rmtree(data_dir, ignore_errors=True)  # each run starts on an empty broker, as on Tansu
        process = ApacheKafkaBroker(port=free_port(), data_dir=data_dir, log_path=log_dir / "kafka.log")
    else:
        process = EmbeddedBroker(port=free_port(), log_path=log_dir / "tansu.log")
    process.start()
    if process.process is not None:
        BROKER_PIDS.append(process.process.pid)
    try:
        yield process.bootstrap_servers
    finally:
        BROKER_PIDS.clear()
        process.stop()


@contextmanager
def environment(
    database: str, *, preload: tuple[str, ...] = (), restart_settings: tuple[str, ...] = ()
) -> Iterator[tuple[str, str]]:
    """(bootstrap servers, database URL) with Django set up against them; logs go to `log_dir()`.

    `preload`, `restart_settings`: server libraries and start-time settings of the embedded PostgreSQL (ignored
    with DATABASE_URL: that server has its own).
    """
    log_dir().mkdir(parents=True, exist_ok=True)
    url = database_url(database, preload=preload, restart_settings=restart_settings)
    create_database(url)
    with broker(log_dir()) as bootstrap:
        os.environ.update(worker_env(url, bootstrap))
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        yield bootstrap, url


def log_dir() -> Path:
    """var/bench/ (or BENCH_LOG_DIR) for the embedded broker, its kafka/ for Apache Kafka."""
    base = Path(os.environ.get("BENCH_LOG_DIR") or ROOT / "var" / "bench")
    return base / ("kafka" if broker_kind() == "kafka" else "")


def figure(name: str, value: float | str) -> None:
    """Print one result as `name=value` on its own line (the format runs are compared by).

    On Apache Kafka the names get a `kafka.` prefix, so both brokers' figures can be read side by side.
    """
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    prefix = "kafka." if broker_kind() == "kafka" else ""
    print(f"{prefix}{name}={text}", flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def wait_until(predicate, *, timeout: float, interval: float = 0.02) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_for_count(label: str, done: Callable[[], int], total: int, *, timeout: float, interval: float = 0.05) -> bool:
    """Poll `done()` until it reaches `total` (True) or `timeout` passes (False); on a terminal, a progress line
    on stderr shows the count, rate and ETA (the figures on stdout are unchanged)."""
    sys.path.insert(0, str(ROOT))
    from apps.common.progress import Progress

    deadline = time.monotonic() + timeout
    with Progress(sys.stderr, label, total=total) as progress:
        while True:
            count = done()
            progress.update(count)
            if count >= total:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)


PENDING_ROWS_SQL = """
WITH written AS (
INSERT INTO outbox_outboxevent
  (event_id, topic, key, event_type, source, payload, traceparent, created_at, state, attempts, last_error)
SELECT gen_random_uuid(), %s, 'truck:' || (g %% %s), 'logiflow.routing.RouteCalculated.v1',
       '/logiflow/routing', %s, '', clock_timestamp(), 'pending', 0, ''
FROM generate_series(1, %s) AS g
RETURNING id, topic, key
)
INSERT INTO outbox_pending (id, topic, key) SELECT id, topic, key FROM written
"""


def insert_pending(*, topic: str, keys: int, payload: str, count: int) -> None:
    """`count` pending outbox rows of `topic` with their queue entries (keys `truck:0` .. over `keys` trucks) and
    the NOTIFY that wakes a relay, inside the caller's transaction: the relay sees them at its commit."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(PENDING_ROWS_SQL, [topic, keys, payload, count])
        cursor.execute("SELECT pg_notify('logiflow_outbox', '')")
