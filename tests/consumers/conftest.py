"""Fixtures for consumer tests: a fresh topic for the test event type, and consumer workers on it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.kafka import ensure_topics
from apps.consumers.runtime import ConsumerWorker
from tests.consumers.support import RawProducer
from tests.consumers.testapp import handlers


@pytest.fixture
def testing_topic(kafka_bootstrap: str, settings: SettingsWrapper) -> str:
    """A new topic per test, so no test reads another's messages."""
    topic = f"testing.events.{uuid.uuid4().hex[:10]}"
    ensure_topics([topic], partitions=2)
    settings.TESTAPP_EVENTS_TOPIC = topic
    return topic


@pytest.fixture
def producer(testing_topic: str) -> RawProducer:
    return RawProducer(testing_topic)


@pytest.fixture
def make_worker(testing_topic: str) -> Iterator[Callable[..., ConsumerWorker]]:
    workers: list[ConsumerWorker] = []

    def make(group: str = "testing", **options: object) -> ConsumerWorker:
        worker = ConsumerWorker(group, group_id=f"{group}-{uuid.uuid4().hex[:10]}", **options)  # type: ignore[arg-type]
        worker.setup()
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.teardown()


@pytest.fixture(autouse=True)
def _fresh_handler_memory() -> None:
    handlers.attempts.clear()
    handlers.committed_callbacks.clear()
    handlers.batch_calls.clear()
    handlers.seen_keys.clear()
