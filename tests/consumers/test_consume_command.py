"""`manage.py consume` as a real process: crash safety (SIGKILL between DB commit and offset commit) and SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.core.management import CommandError, call_command
from django.db import connection

from apps.common.kafka import client_config
from apps.consumers.models import DeadLetter, InboxEntry
from tests.consumers.support import RawProducer, happened
from tests.consumers.testapp.models import Effect, Script
from tests.support.processes import Processes, log_of, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def start_consumer(start_command: Processes, testing_topic: str) -> Callable[[str], subprocess.Popen[bytes]]:
    def start(group_id: str) -> subprocess.Popen[bytes]:
        return start_command("consume", "testing", "--group-id", group_id, env={"TESTAPP_EVENTS_TOPIC": testing_topic})

    return start


def wait_for(condition: Callable[[], bool]) -> None:
    wait_until(condition, timeout=40.0)


def committed_offset(group_id: str, topic: str, partition: int = 0) -> int:
    consumer = Consumer(client_config(**{"group.id": group_id, "enable.auto.commit": False}))
    try:
        return consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        consumer.close()


def test_consumer_killed_after_its_db_commit_but_before_the_offset_commit_applies_nothing_twice(
    start_consumer: Callable[[str], subprocess.Popen[bytes]], producer: RawProducer, testing_topic: str
) -> None:
    Script.objects.create(scenario="crash", crash_after_commit=True)
    crashing_id = producer.event(happened(key="truck-1", scenario="crash", seq=1))
    producer.flush()
    group_id = f"crash-{uuid.uuid4().hex[:8]}"

    first = start_consumer(group_id)
    assert first.wait(timeout=60) == -signal.SIGKILL
    assert Effect.objects.filter(event_id=crashing_id).count() == 1, "the handler's transaction committed"
    assert committed_offset(group_id, testing_topic) < 1, "the offset was not committed before the kill"

    producer.event(happened(key="truck-1", seq=2))
    producer.flush()
    second = start_consumer(group_id)
    wait_for(lambda: Effect.objects.filter(seq=2).exists())
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    assert Effect.objects.filter(event_id=crashing_id).count() == 1
    assert InboxEntry.objects.filter(event_id=crashing_id).count() == 1
    assert "duplicates=1" in log_of(second)


def test_sigterm_finishes_commits_the_offsets_leaves_the_group_and_exits_zero(
    start_consumer: Callable[[str], subprocess.Popen[bytes]], producer: RawProducer, testing_topic: str
) -> None:
    for seq in range(1, 4):
        producer.event(happened(key="truck-1", seq=seq))
    producer.flush()
    group_id = f"term-{uuid.uuid4().hex[:8]}"
    process = start_consumer(group_id)
    wait_for(lambda: Effect.objects.count() == 3)

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert committed_offset(group_id, testing_topic) == 3


def test_consume_rejects_an_unknown_group_and_names_the_known_ones() -> None:
    with pytest.raises(CommandError, match="unknown consumer group 'nope'.*testing"):
        call_command("consume", "nope")


def test_database_connection_lost_mid_run_reconnects_without_dead_lettering(
    start_consumer: Callable[[str], subprocess.Popen[bytes]], producer: RawProducer
) -> None:
    producer.event(happened(key="truck-1", seq=1))
    producer.flush()
    process = start_consumer(f"outage-{uuid.uuid4().hex[:8]}")
    wait_for(lambda: Effect.objects.filter(seq=1).exists())

    with connection.cursor() as cursor:  # drop every other session on the test database, like a failover would
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1
    producer.event(happened(key="truck-1", seq=2))
    producer.flush()

    wait_for(lambda: Effect.objects.filter(seq=2).exists())
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not DeadLetter.objects.exists()
    assert list(Effect.objects.values_list("seq", flat=True)) == [1, 2]


def test_hostile_keys_and_headers_do_not_restart_the_consumer_and_later_events_are_handled(
    start_consumer: Callable[[str], subprocess.Popen[bytes]], producer: RawProducer
) -> None:
    # What wedged the invoicing consumer: a Java integer key, a NUL in a header value, a key longer than the
    # old column, a non-UTF-8 key; each failing or not, with valid events behind them on the same partition.
    producer.event(happened(key="java", seq=1), key=b"\x00\x00\x00\x07")
    producer.send(value=b"{not json", key=b"\x00\x00\x00\x08", headers=[("ce_id", b"\x00")])
    producer.event(happened(key="header", seq=2), extra_headers=[("x-note", b"a\x00b")])
    producer.send(value=b"{not json", key=b"k" * 300, headers=[("x-note", b"\x00")])
    producer.send(value=b"{not json", key=b"\xff\xfe", headers=[])
    producer.event(happened(key="after", seq=3))
    producer.flush()

    process = start_consumer(f"hostile-{uuid.uuid4().hex[:8]}")
    wait_for(lambda: Effect.objects.filter(seq=3).exists())
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0

    assert list(Effect.objects.values_list("seq", flat=True)) == [1, 2, 3]
    assert sorted(bytes(key) for key in DeadLetter.objects.values_list("key", flat=True)) == [
        b"\x00\x00\x00\x08", b"k" * 300, b"\xff\xfe",
    ]
    assert "reconnecting" not in log_of(process)
