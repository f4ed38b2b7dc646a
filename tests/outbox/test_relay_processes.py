"""Real `manage.py relay_outbox` processes: concurrency, SIGKILL, SIGTERM and a broker outage."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from django.test import override_settings

from apps.common.kafka import ensure_topics
from apps.contracts import all_topics
from apps.outbox.models import OutboxEvent
from tests.support.brokers import Broker, new_broker, restart_empty
from tests.outbox.support import RelayProcess, assert_per_key_order, pending_count, publish_routes, wait_for
from tests.support.kafka import Received, TopicTail

TOPIC = "routing.events"


def _read_ids(tail: TopicTail, wanted: set[str], *, timeout: float = 60.0) -> list[Received]:
    """Everything of this test's events on the topic, until every wanted id was seen (duplicates kept)."""
    received: list[Received] = []
    missing = set(wanted)
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        for message in tail.read(len(missing), timeout=1):
            if message.headers.get("ce_id") in wanted:
                received.append(message)
                missing.discard(message.headers["ce_id"])
    received.extend(m for m in tail.read(10_000, timeout=1) if m.headers.get("ce_id") in wanted)
    return received


def _published_by(relay: RelayProcess) -> int:
    match = re.search(r"relay stopped: (\d+) published", relay.output())
    assert match, relay.output()[-2000:]
    return int(match.group(1))


@pytest.mark.django_db(transaction=True)
def test_two_relays_drain_10000_events_once_each_and_in_key_order(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    tail = TopicTail(TOPIC)
    relays = [RelayProcess(subprocess_env, tmp_path / f"relay-{i}.log") for i in range(2)]
    try:
        event_ids = publish_routes(10_000, trucks=50, per_transaction=250)
        assert wait_for(lambda: pending_count() == 0, timeout=120), "relays did not drain the outbox"
        received = _read_ids(tail, set(event_ids))
    finally:
        codes = [relay.stop() for relay in relays]
        tail.close()
    assert codes == [0, 0]
    counts = Counter(m.headers["ce_id"] for m in received)
    assert set(counts) == set(event_ids)
    assert max(counts.values()) == 1  # no row sent twice, by one relay or by both
    assert OutboxEvent.objects.exclude(attempts=1).count() == 0
    assert all(_published_by(relay) > 0 for relay in relays)  # both relays really took part
    assert_per_key_order(received)


@pytest.mark.django_db(transaction=True)
def test_relay_killed_mid_batch_loses_nothing_after_restart(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    tail = TopicTail(TOPIC)
    env = {"OUTBOX_RELAY_BATCH_SIZE": "100"}
    first = RelayProcess(subprocess_env, tmp_path / "first.log", **env)
    try:
        event_ids = publish_routes(5000, trucks=20, per_transaction=5000)
        assert wait_for(lambda: OutboxEvent.objects.filter(state="published").exists(), timeout=30, interval=0.01)
        first.process.kill()  # SIGKILL: no chance to flush or commit
        first.wait()
        assert pending_count() > 0, "the relay finished before it could be killed mid-way"
        second = RelayProcess(subprocess_env, tmp_path / "second.log", **env)
        try:
            assert wait_for(lambda: pending_count() == 0, timeout=60)
            received = _read_ids(tail, set(event_ids))
        finally:
            assert second.stop() == 0
    finally:
        if first.process.poll() is None:
            first.stop()
        tail.close()
    assert {m.headers["ce_id"] for m in received} == set(event_ids)  # duplicates allowed, loss not
    assert_per_key_order(received)


@pytest.mark.django_db(transaction=True)
def test_sigterm_exits_0_and_every_row_marked_published_is_on_the_topic(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    tail = TopicTail(TOPIC)
    relay = RelayProcess(subprocess_env, tmp_path / "relay.log", OUTBOX_RELAY_BATCH_SIZE="200")
    try:
        event_ids = publish_routes(4000, trucks=20, per_transaction=4000)
        assert wait_for(lambda: OutboxEvent.objects.filter(state="published").exists(), timeout=30, interval=0.01)
        relay.signal(signal.SIGTERM)
        assert relay.wait(30) == 0
        published = {
            str(event_id): (partition, offset)
            for event_id, partition, offset in OutboxEvent.objects.filter(state="published").values_list(
                "event_id", "partition", "offset"
            )
        }
        received = _read_ids(tail, set(published), timeout=30)
    finally:
        if relay.process.poll() is None:
            relay.stop()
        tail.close()
    assert published and len(published) <= len(event_ids)
    on_topic = {m.headers["ce_id"]: (m.partition, m.offset) for m in received}
    # Every row the relay marked is on the topic exactly where its delivery report said.
    assert {event_id: on_topic.get(event_id) for event_id in published} == published
    assert "relay_outbox stopped" in relay.output()


@pytest.fixture
def outage_broker(embedded_broker: Broker | None, tmp_path: Path):
    """A broker of this test's own (same kind as the session's), to stop and restart without disturbing that one."""
    if embedded_broker is None:
        pytest.skip("needs a broker process of its own to stop and restart; an external Kafka cannot be")
    broker = new_broker(tmp_path / "outage-broker")
    broker.start()
    with override_settings(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers):
        ensure_topics(all_topics())
        yield broker
    broker.stop()


@pytest.fixture
def outage_env(subprocess_env: dict[str, str], outage_broker: Broker) -> dict[str, str]:
    """A relay process's environment on the outage broker, with deliveries that time out and retry quickly."""
    return {
        **subprocess_env,
        "KAFKA_BOOTSTRAP_SERVERS": outage_broker.bootstrap_servers,
        "OUTBOX_RELAY_DELIVERY_TIMEOUT_S": "2",
        "OUTBOX_RELAY_RETRY_MAX_S": "1",
    }


@pytest.mark.django_db(transaction=True)
def test_broker_outage_while_events_are_written_loses_nothing_and_does_not_spin(
    outage_env: dict[str, str], outage_broker: Broker, tmp_path: Path
) -> None:
    relay = RelayProcess(outage_env, tmp_path / "relay.log")
    try:
        before = publish_routes(20, trucks=5)
        assert wait_for(lambda: pending_count() == 0, timeout=30)
        outage_broker.stop()
        during = publish_routes(50, trucks=5)
        outage_started = time.monotonic()
        assert wait_for(lambda: OutboxEvent.objects.filter(attempts__gte=2).exists(), timeout=30)
        time.sleep(max(0.0, 8 - (time.monotonic() - outage_started)))
        outage_seconds = time.monotonic() - outage_started
        assert OutboxEvent.objects.filter(state="published").count() == len(before)
        # Each retry waits for a 2 s delivery timeout then backs off: a hot loop would count hundreds.
        most_attempts = max(OutboxEvent.objects.values_list("attempts", flat=True))
        assert 2 <= most_attempts <= outage_seconds / 2 + 2
        assert OutboxEvent.objects.exclude(last_error="").filter(state="pending").exists()

        outage_broker.start()
        ensure_topics(all_topics())  # Tansu forgot its topics on the restart; Apache Kafka kept them on disk
        assert wait_for(lambda: pending_count() == 0, timeout=60), relay.output()[-3000:]
        tail = TopicTail(TOPIC, from_beginning=True)
        try:
            received = _read_ids(tail, set(during))
        finally:
            tail.close()
    finally:
        code = relay.stop()
    assert {m.headers["ce_id"] for m in received} == set(during)
    assert OutboxEvent.objects.filter(state="failed").count() == 0
    assert_per_key_order(received)
    assert code == 0


def _all_on_topic(wanted: set[str], *, timeout: float = 30.0) -> set[str]:
    """The wanted ce_ids the topic holds (read from its beginning)."""
    tail = TopicTail(TOPIC, from_beginning=True)
    try:
        return {m.headers["ce_id"] for m in _read_ids(tail, wanted, timeout=timeout)}
    finally:
        tail.close()


@pytest.mark.django_db(transaction=True)
def test_rows_published_before_the_broker_forgot_everything_reach_the_new_broker(
    subprocess_env: dict[str, str], outage_broker: Broker, tmp_path: Path
) -> None:
    """`make run` after Ctrl-C: Tansu starts empty (Apache Kafka: on an empty volume), the database still says
    'published'."""
    env = {**subprocess_env, "KAFKA_BOOTSTRAP_SERVERS": outage_broker.bootstrap_servers}
    first = RelayProcess(env, tmp_path / "first.log")
    try:
        event_ids = set(publish_routes(30, trucks=4))
        assert wait_for(lambda: pending_count() == 0, timeout=30), first.output()[-3000:]
    finally:
        assert first.stop() == 0
    assert _all_on_topic(event_ids) == event_ids
    again = RelayProcess(env, tmp_path / "again.log")  # same broker, memory intact: nothing is re-sent
    try:
        time.sleep(3)
        assert OutboxEvent.objects.exclude(attempts=1).count() == 0, again.output()[-3000:]
    finally:
        assert again.stop() == 0

    restart_empty(outage_broker)  # no topics, no messages
    ensure_topics(all_topics())
    after = RelayProcess(env, tmp_path / "after.log")
    try:
        assert wait_for(lambda: OutboxEvent.objects.filter(attempts=2, state="published").count() == 30, timeout=60), (
            after.output()[-3000:]
        )
        received = _read_ids(TopicTail(TOPIC, from_beginning=True), event_ids)
    finally:
        assert after.stop() == 0
    assert {m.headers["ce_id"] for m in received} == event_ids
    assert_per_key_order(received)
    assert "forgot what it had acknowledged" in after.output()


@pytest.mark.django_db(transaction=True)
def test_broker_emptied_under_a_running_relay_gets_the_window_sent_again(
    outage_env: dict[str, str], outage_broker: Broker, tmp_path: Path
) -> None:
    relay = RelayProcess({**outage_env, "OUTBOX_RELAY_BROKER_CHECK_S": "5"}, tmp_path / "relay.log")
    try:
        before = set(publish_routes(20, trucks=4))
        assert wait_for(lambda: pending_count() == 0, timeout=30)
        restart_empty(outage_broker)
        ensure_topics(all_topics())
        during = set(publish_routes(5, trucks=4))
        # Everything published before the broker emptied is on the new broker too, with what came after.
        assert wait_for(lambda: _all_on_topic(before | during, timeout=2) == before | during, timeout=90, interval=1), (
            relay.output()[-3000:]
        )
    finally:
        code = relay.stop()
    assert code == 0
    assert OutboxEvent.objects.exclude(state="published").count() == 0
