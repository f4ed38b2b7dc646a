"""The relay under faults inside its own process: connections refused, a failure mid-batch, a stuck statement,
a producer that keeps failing fatally, delivery reports that confirm a later row before an earlier one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from contextlib import contextmanager
from unittest import mock

import psycopg
import pytest
from confluent_kafka import KafkaError
from confluent_kafka import Producer as RealProducer
from django.db import connection, transaction
from django.db.backends.postgresql.base import DatabaseWrapper
from django.test import override_settings

from apps import outbox
from apps.common.workers import Backoff, run_worker
from apps.outbox.models import OutboxEvent
from apps.outbox.relay import Batch, OutboxRelay, claims
from tests.factories import route_calculated
from tests.outbox.support import pending_count, wait_for
from tests.support.kafka import TopicTail


class RelayThread:
    """`run_worker(relay)` on a thread of this process, as the management command runs it."""

    def __init__(self, relay: OutboxRelay | None = None) -> None:
        self.relay = relay or OutboxRelay()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="relay-main", daemon=True)

    def _run(self) -> None:
        try:
            run_worker(self.relay, backoff=Backoff(initial=0.2, maximum=1.0), install_signals=False)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            self.error = error
        finally:
            connection.close()

    def __enter__(self) -> RelayThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.relay.stop()
        self.thread.join(30)
        if self.thread.is_alive():
            # Wedged: end its sessions, or their locks would hang the test database's flush.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

    @property
    def stopped(self) -> bool:
        return not self.thread.is_alive()


def _publish(count: int, *, truck: int = 1) -> list[str]:
    with transaction.atomic():
        return [str(outbox.publish(route_calculated(truck_id=truck, calculation=n + 1))) for n in range(count)]


@contextmanager
def _relay_connection_refused(times: int) -> Iterator[list[str]]:
    """The first `times` connections the relay opens fail as a full server refuses them."""
    real = DatabaseWrapper.get_new_connection
    refused: list[str] = []

    def get_new_connection(self, conn_params):  # noqa: ANN001, ANN202
        if threading.current_thread().name == "relay-main" and len(refused) < times:
            refused.append(threading.current_thread().name)
            raise psycopg.OperationalError("FATAL:  sorry, too many clients already")
        return real(self, conn_params)

    with mock.patch.object(DatabaseWrapper, "get_new_connection", get_new_connection):
        yield refused


@pytest.mark.django_db(transaction=True)
def test_relay_whose_first_connections_are_refused_publishes_once_the_database_lets_it_in(
    kafka_bootstrap: str,
) -> None:
    _publish(3)
    with _relay_connection_refused(2) as refused, RelayThread() as relay:
        published = wait_for(lambda: pending_count() == 0, timeout=15)
        assert published, f"relay wedged after {len(refused)} refused connections"
    assert relay.stopped and relay.error is None
    assert refused  # the fault really happened
    assert set(OutboxEvent.objects.values_list("state", flat=True)) == {"published"}


@pytest.mark.django_db(transaction=True)
def test_failure_while_awaiting_reports_rolls_the_open_batches_back_and_the_relay_publishes_afterwards(
    kafka_bootstrap: str,
) -> None:
    _publish(4)
    real = OutboxRelay._await_reports
    calls: list[int] = []

    def await_reports_failing_once(self, batch):  # noqa: ANN001, ANN202
        calls.append(batch.seq)
        if len(calls) == 1:
            raise RuntimeError("producer poll blew up")
        return real(self, batch)

    with (
        override_settings(OUTBOX_RELAY_BATCH_SIZE=1, OUTBOX_RELAY_PIPELINE_DEPTH=2),
        mock.patch.object(OutboxRelay, "_await_reports", await_reports_failing_once),
        RelayThread() as relay,
    ):
        assert wait_for(lambda: pending_count() == 0, timeout=15), "the relay did not recover from the failed batch"
    assert relay.stopped and relay.error is None
    assert len(calls) > 2  # the fault really happened, with a second batch open behind the failing one
    assert set(OutboxEvent.objects.values_list("state", flat=True)) == {"published"}


@pytest.mark.django_db(transaction=True)
def test_statement_stuck_past_the_stall_timeout_is_cancelled_and_the_relay_publishes_afterwards(
    kafka_bootstrap: str,
) -> None:
    _publish(2)
    real = claims.claim
    stuck: list[float] = []

    def claim_stuck_once(conn, limit, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if not stuck:
            stuck.append(time.monotonic())
            conn.execute("SELECT pg_sleep(60)")  # a lock, a stuck server: only the statement timeout ends it
        return real(conn, limit, **kwargs)

    with (
        override_settings(OUTBOX_RELAY_STALL_TIMEOUT_S=1.0),
        mock.patch.object(claims, "claim", claim_stuck_once),
        RelayThread() as relay,
    ):
        assert wait_for(lambda: pending_count() == 0, timeout=20), "the relay waited on its stuck statement"
        recovered = time.monotonic() - stuck[0]
    assert relay.stopped and relay.error is None
    assert recovered < 10


class _Message:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return -1

    def offset(self) -> int:
        return -1


class FatallyBrokenProducer:
    """A producer that has hit a fatal error (as librdkafka's idempotent producer can): it accepts messages,
    then its next poll raises the fatal error through `error_cb` and fails every queued message with _FATAL."""

    def __init__(self, config: dict) -> None:
        self.error_cb = config["error_cb"]
        self.queued: list[tuple[str, object]] = []

    def produce(self, topic: str, value: object, key: object, *, headers: object, on_delivery: object) -> None:
        self.queued.append((topic, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        queued, self.queued = self.queued, []
        if queued:
            self.error_cb(KafkaError(KafkaError._FATAL, "Fatal idempotent producer error", fatal=True))
        for topic, on_delivery in queued:
            on_delivery(KafkaError(KafkaError._FATAL, "Fatal idempotent producer error", fatal=True), _Message(topic))
        return len(queued)

    def purge(self, **_: object) -> None:
        self.poll()

    def flush(self, timeout: float | None = None) -> int:
        self.poll()
        return 0

    def close(self) -> None:
        pass


@pytest.mark.django_db(transaction=True)
def test_producer_rebuilt_after_fatal_errors_with_growing_backoff_and_unsent_rows_keep_their_attempts(
    kafka_bootstrap: str,
) -> None:
    _publish(50)
    builds: list[float] = []

    def producer_factory(config: dict):  # noqa: ANN202
        builds.append(time.monotonic())
        # Three producers in a row end fatally; the fourth is a real one.
        return FatallyBrokenProducer(config) if len(builds) <= 3 else RealProducer(config)

    with (
        override_settings(OUTBOX_RELAY_RETRY_MAX_S=2.0),
        mock.patch("apps.outbox.relay.loop.Producer", producer_factory),
        RelayThread() as relay,
    ):
        assert wait_for(lambda: len(builds) >= 2, timeout=10)
        # The rows went only to producers that never sent them: no attempt is counted.
        assert set(OutboxEvent.objects.values_list("attempts", flat=True)) == {0}
        assert wait_for(lambda: pending_count() == 0, timeout=20), f"{len(builds)} producers built"
    assert relay.error is None
    waits = [round(later - earlier, 1) for earlier, later in zip(builds, builds[1:], strict=False)]
    assert len(builds) == 4, waits  # no hot loop of rebuilds
    assert waits[0] >= 0.4 and waits[1] >= 0.9 and waits[2] >= 1.8, waits  # 0.5, 1, 2 s: doubling
    assert set(OutboxEvent.objects.values_list("state", "attempts")) == {("published", 1)}


@contextmanager
def _first_report_times_out(row_id: int) -> Iterator[None]:
    """The producer gives up on `row_id` once (message.timeout.ms) although later rows were delivered."""
    real = Batch.report
    timed_out: list[int] = []

    def report(self: Batch, slot: int, error: KafkaError | None, message: object) -> None:
        if self.ids[slot] == row_id and not timed_out:
            timed_out.append(row_id)
            error = KafkaError(KafkaError._MSG_TIMED_OUT, "Local: Message timed out")
        real(self, slot, error, message)

    with mock.patch.object(Batch, "report", report):
        yield
    assert timed_out, "the injected timeout never happened"


@pytest.mark.parametrize("batch_size", [1000, 1], ids=["same-batch", "next-batch-open-meanwhile"])
@pytest.mark.django_db(transaction=True)
def test_row_delivered_after_an_earlier_row_of_its_key_timed_out_is_not_marked_before_it(
    kafka_bootstrap: str, batch_size: int
) -> None:
    tail = TopicTail("routing.events")
    _publish(2, truck=4)
    _publish(1, truck=5)  # another key: not held back by truck 4's timeout
    first, second, other = OutboxEvent.objects.order_by("id")
    marked: list[int] = []  # ids in the order the relay marks them published
    real_mark = claims.mark_published

    def mark_published(conn, delivered):  # noqa: ANN001, ANN202
        marked.extend(d.id for d in delivered)
        return real_mark(conn, delivered)

    with (
        override_settings(OUTBOX_RELAY_BATCH_SIZE=batch_size, OUTBOX_RELAY_PIPELINE_DEPTH=2),
        mock.patch.object(claims, "mark_published", mark_published),
    ):
        relay = OutboxRelay()
        relay.setup()
        try:
            with _first_report_times_out(first.id):
                relay.run_once()
            assert wait_for(lambda: (relay.run_once(), pending_count())[1] == 0, timeout=20, interval=0)
        finally:
            relay.teardown()
    try:
        on_topic = _ids_read(tail, {str(first.event_id), str(second.event_id)})
    finally:
        tail.close()
    first.refresh_from_db()
    second.refresh_from_db()
    assert marked.index(first.id) < marked.index(second.id), "the later row was marked before the earlier one"
    assert marked.count(second.id) == 1 and other.id in marked
    assert first.published_at <= second.published_at
    assert first.attempts == 2
    # The "timed out" copy had reached the broker after all, and the later row may have gone out behind it
    # (always in the same batch; in the pipeline when it was claimed before the timeout was recorded).
    # Whatever went out, the last copies on the topic are in order.
    last = {event_id: position for position, event_id in enumerate(on_topic)}
    assert on_topic.count(str(first.event_id)) == 2
    assert on_topic.count(str(second.event_id)) == second.attempts
    assert last[str(first.event_id)] < last[str(second.event_id)]


def _ids_read(tail: TopicTail, wanted: set[str], *, quiet: float = 2.0) -> list[str]:
    """The ce_ids of `wanted` events in topic order, until nothing new arrived for `quiet` seconds."""
    ids: list[str] = []
    while batch := tail.read(100, timeout=quiet):
        ids.extend(m.headers["ce_id"] for m in batch if m.headers.get("ce_id") in wanted)
    return ids


@pytest.mark.django_db(transaction=True)
def test_the_relays_statements_on_its_main_connection_are_bounded_too(kafka_bootstrap: str, settings: Any) -> None:
    """Heartbeats, the stranded sweep, marks and re-queues run on Django's connection: a stuck server or a held
    lock must not keep them (and the relay) waiting for ever, and a dead server must be noticed (keepalives)."""
    settings.OUTBOX_RELAY_STALL_TIMEOUT_S = 7
    relay = OutboxRelay()
    relay.setup()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            bound = cursor.fetchone()[0]
    finally:
        relay.teardown()
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")

    assert bound == "7s"
    assert connection.get_connection_params()["keepalives"] == 1
