"""bench/relay.py and bench/invoicing.py on a tiny workload: the CPU-per-event lines are printed once each, well
formed, and add up (a total is the sum of its parts, a bound is 2 cores' worth of microseconds over it).

The scripts run as `make bench` runs them, on the test session's PostgreSQL server (databases of their own, dropped
afterwards) and broker (fresh topics). The figures themselves are not judged: on a tiny workload on a shared machine
they mean nothing (a part can even round to zero: /proc counts CPU in 10 ms ticks); what is checked is that each
is there, finite and not negative, and that the totals are positive. The broker is the session's,
not one the script started, so no broker lines are expected; the PostgreSQL backends are read only when the server
runs on this host (the session's embedded one).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from logiflow.embedded_postgres import with_database

pytestmark = pytest.mark.timeout(900)

LINE = re.compile(r"^([a-z0-9_.]+)=(\S+)$")
LOCAL_SERVER = not os.environ.get("DATABASE_URL")  # the session's embedded PostgreSQL: its backends are readable
DRAIN_PARTS = ["drain_cpu_us_per_event", "drain_relay_cpu_us_per_event"] + (
    ["drain_db_cpu_us_per_event", "drain_relay_db_cpu_us_per_event"] if LOCAL_SERVER else []
)
RELAY_PARTS = ["relay_cpu_us_per_event"] + (["relay_db_cpu_us_per_event"] if LOCAL_SERVER else [])


def run_bench(script: str, database_variable: str, sizes: dict[str, str], kafka_bootstrap: str,
              log_dir: Path) -> dict[str, float]:
    """The script's figures, each printed once and a finite number."""
    database = f"bench_cpu_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ, **sizes, database_variable: database,
        "DATABASE_URL": settings.DATABASE_URL, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:12]}.", "BENCH_LOG_DIR": str(log_dir),
    }
    env.pop("BENCH_BROKER", None)  # unprefixed names, whichever broker the session runs
    env.pop("BENCH_PROFILE", None)
    try:
        result = subprocess.run([sys.executable, str(Path(settings.BASE_DIR) / "bench" / script)],
                                cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=840)
    finally:
        with psycopg.connect(with_database(settings.DATABASE_URL, "postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    assert result.returncode == 0, f"bench/{script} failed:\n{result.stderr[-3000:]}"
    pairs = [LINE.match(line) for line in result.stdout.splitlines()]
    assert all(pairs), f"not name=value: {result.stdout}"
    names = [pair.group(1) for pair in pairs]  # type: ignore[union-attr]
    assert len(names) == len(set(names)), f"printed twice: {names}"
    figures = {pair.group(1): float(pair.group(2)) for pair in pairs}  # type: ignore[union-attr]
    assert all(math.isfinite(value) for value in figures.values())
    return figures


@pytest.fixture(scope="module")
def drain(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, float]]:
    # More than one consumer batch (500), so the drain can be timed; one PDF, so that part stays short.
    yield run_bench("invoicing.py", "BENCH_INVOICING_DATABASE",
                    {"BENCH_INVOICE_EVENTS": "1200", "BENCH_PDF_INVOICES": "1"}, kafka_bootstrap,
                    tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def relay(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, float]]:
    yield run_bench("relay.py", "BENCH_DATABASE_NAME", {"BENCH_EVENTS": "2000", "BENCH_LATENCY_SECONDS": "1"},
                    kafka_bootstrap, tmp_path_factory.mktemp("bench"))


def test_the_drain_prints_each_process_cpu_per_invoice_their_sum_and_the_bound_on_two_cores(
    drain: dict[str, float],
) -> None:
    cpu_lines = {name for name in drain if "cpu" in name or "cores" in name}
    assert cpu_lines == {*DRAIN_PARTS, "drain_cpu_events", "drain_total_cpu_us_per_event",
                         "drain_max_per_s_on_2_cores"}
    # /proc counts CPU in clock ticks (10 ms): on this tiny workload a small part can round to nothing
    assert all(drain[name] >= 0 for name in DRAIN_PARTS) and drain["drain_total_cpu_us_per_event"] > 0
    assert 0 < drain["drain_cpu_events"] <= 1200
    assert drain["drain_total_cpu_us_per_event"] == pytest.approx(sum(drain[name] for name in DRAIN_PARTS), abs=0.05)
    assert drain["drain_max_per_s_on_2_cores"] == pytest.approx(2e6 / drain["drain_total_cpu_us_per_event"], rel=1e-3)


def test_the_relay_benchmark_prints_the_producer_and_relay_cpu_per_event_and_their_bounds(
    relay: dict[str, float],
) -> None:
    cpu_lines = {name for name in relay if "cpu" in name or "cores" in name}
    assert cpu_lines == {"producer_cpu_us_per_event", *RELAY_PARTS, "producer_max_per_s_on_2_cores",
                         "relay_max_per_s_on_2_cores", "relay_vs_producer_cpu_ratio"}
    assert all(relay[name] >= 0 for name in RELAY_PARTS) and relay["producer_cpu_us_per_event"] > 0
    assert relay["relay_cpu_us_per_event"] > 0
    relay_us = sum(relay[name] for name in RELAY_PARTS)
    assert relay["producer_max_per_s_on_2_cores"] == pytest.approx(2e6 / relay["producer_cpu_us_per_event"], rel=1e-2)
    assert relay["relay_max_per_s_on_2_cores"] == pytest.approx(2e6 / relay_us, rel=1e-2)
    # printed with two decimals
    assert relay["relay_vs_producer_cpu_ratio"] == pytest.approx(relay["producer_cpu_us_per_event"] / relay_us,
                                                                 abs=0.006)
