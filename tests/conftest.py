"""Test-session infrastructure: a reachable PostgreSQL (the test settings start an embedded one) and a real
Kafka-protocol broker.

The broker is Tansu started on a free port (or Apache Kafka from jars with LOGIFLOW_TEST_BROKER=kafka, see
tests/support/brokers.py), unless KAFKA_BOOTSTRAP_SERVERS names a running one.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.test import override_settings

from apps.common.kafka import ensure_topics
from pytest_django.fixtures import Settings
from apps.contracts import all_topics
from logiflow.embedded_postgres import with_database
from tests.support.brokers import Broker, new_broker
from tests.support.processes import Processes

EXTERNAL_KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
# Hypothesis (under schemathesis) keeps its files in ./.hypothesis: the tests write nothing into the source tree.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="logiflow-hypothesis-"))


def pytest_configure(config: pytest.Config) -> None:
    try:
        psycopg.connect(settings.DATABASE_URL, dbname="postgres", connect_timeout=3).close()
    except psycopg.OperationalError as error:
        pytest.exit(f"PostgreSQL is not reachable (DATABASE_URL={settings.DATABASE_URL}): {error}", returncode=2)


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker | None]:
    """The broker process this session started (Tansu or Apache Kafka); None against an external Kafka."""
    if EXTERNAL_KAFKA:
        yield None
        return
    broker = new_broker(Path(tmp_path_factory.mktemp("broker")))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(embedded_broker: Broker | None) -> Iterator[str]:
    """Bootstrap servers of a live broker with LogiFlow's topics; settings point at it for the session."""
    servers = EXTERNAL_KAFKA or embedded_broker.bootstrap_servers  # type: ignore[union-attr]
    with override_settings(KAFKA_BOOTSTRAP_SERVERS=servers):
        ensure_topics(all_topics())
        yield servers


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Transactional tests that restore the migrations' data (`serialized_rollback`) run first among the
    transactional ones (pytest-django has put those after the others). They reload the content types and groups
    by their ids, which holds only right after the non-transactional tests or another such test; a plain
    transactional test's flush re-creates content types under new ids, and the reload then collides with them."""
    transactional = [index for index, item in enumerate(items) if _transactional(item)]
    if not transactional:
        return
    first = transactional[0]
    restoring = [items[i] for i in transactional if _django_db(items[i]).get("serialized_rollback")]
    moved = {id(item) for item in restoring}
    items[first:] = restoring + [item for item in items[first:] if id(item) not in moved]


def _transactional(item: pytest.Item) -> bool:
    marker = _django_db(item)
    fixtures = getattr(item, "fixturenames", [])
    return bool(marker.get("transaction") or marker.get("reset_sequences")) or bool(
        {"transactional_db", "live_server"} & set(fixtures)
    )


def _django_db(item: pytest.Item) -> dict[str, object]:
    marker = item.get_closest_marker("django_db")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def isolated_topics(kafka_bootstrap: str, settings: Settings) -> str:
    """Fresh topics for one test (KAFKA_TOPIC_PREFIX), so no other test's events reach its consumers.

    Starting a consumer "at the topic's end" is not enough: Tansu's high watermark can lag the last offset.
    Request it before `subprocess_env` (e.g. `pytest.mark.usefixtures`) so worker processes get the prefix.
    """
    prefix = f"t{uuid.uuid4().hex[:12]}."
    settings.KAFKA_TOPIC_PREFIX = prefix
    ensure_topics([prefix + topic for topic in all_topics()])
    return prefix


@pytest.fixture
def subprocess_env(kafka_bootstrap: str, django_db_setup: None) -> dict[str, str]:
    """Environment for a worker started as a real process: same test database, same broker."""
    url = with_database(settings.DATABASE_URL, settings.DATABASES["default"]["NAME"])
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "logiflow.settings.test",
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": settings.KAFKA_TOPIC_PREFIX,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def start_command(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    """`start_command.start("consume", "invoicing")`: a real worker process, killed at the end if still running."""
    processes = Processes(subprocess_env, tmp_path)
    yield processes
    processes.kill_all()


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> Iterator[None]:
    """API throttles count in the cache: without this, one test's requests would throttle the next's."""
    from django.core.cache import cache

    cache.clear()
    yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The API fuzz run's size: operations exercised and requests sent (issue: report what was counted); where the
    browser tests saved their screenshots."""
    import sys

    fuzz = sys.modules.get("tests.common.test_api_fuzz")
    if fuzz is not None and fuzz.SENT:
        terminalreporter.write_line(
            f"api fuzz: {len(fuzz.SENT)} operations, {sum(fuzz.SENT.values())} requests (schemathesis)"
        )
    browser = sys.modules.get("tests.support.browser")
    if browser is not None and browser.shots_taken() is not None:
        terminalreporter.write_line(f"browser screenshots: {browser.shots_taken()}")
