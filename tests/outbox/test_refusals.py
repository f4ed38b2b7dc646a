"""What the relay does with the broker's refusals: only hopeless bytes fail; everything a person can fix is retried
and reported loudly (ERROR log, RelayProblem for the admin, `/readyz`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from confluent_kafka import KafkaError
from django.db import transaction
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from apps import outbox
from apps.outbox.models import OutboxEvent, PendingEvent, RelayProblem
from apps.outbox.relay import Batch, OutboxRelay
from tests.factories import invoice_generated, route_calculated


@contextmanager
def _broker_refuses(error: KafkaError) -> Iterator[None]:
    """Every delivery report of this relay says `error` (as a broker with a missing ACL would)."""
    real = Batch.report

    def report(self: Batch, slot: int, _error: KafkaError | None, message: object) -> None:
        real(self, slot, error, message)

    with mock.patch.object(Batch, "report", report):
        yield


def _run_once(relay: OutboxRelay) -> None:
    relay.setup()
    try:
        relay.run_once()
    finally:
        relay.teardown()


@pytest.mark.parametrize(
    "code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.TOPIC_EXCEPTION, KafkaError.UNKNOWN_TOPIC_OR_PART,
             KafkaError.POLICY_VIOLATION],
    ids=["authorization", "topic-exception", "unknown-topic", "policy"],
)
@pytest.mark.django_db(transaction=True)
def test_refusal_a_person_can_fix_keeps_the_row_pending_and_is_reported_until_a_row_gets_through(
    kafka_bootstrap: str, code: int, caplog: pytest.LogCaptureFixture, settings: SettingsWrapper
) -> None:
    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
        outbox.publish(route_calculated(truck_id=2))
    settings.METRICS_TOKEN = "s3cret-token"  # /readyz names components to monitoring only
    client = Client(HTTP_AUTHORIZATION="Bearer s3cret-token")

    with _broker_refuses(KafkaError(code, "refused by the broker")), caplog.at_level(logging.ERROR):
        _run_once(OutboxRelay())

    assert set(OutboxEvent.objects.values_list("state", "attempts")) == {("pending", 1)}
    assert PendingEvent.objects.count() == 2  # still queued: retried, never dropped
    [problem] = RelayProblem.objects.all()
    assert (problem.code, problem.topic, problem.rows) == (KafkaError(code).name(), "routing.events", 2)
    assert any(r.levelno == logging.ERROR and KafkaError(code).name() in r.getMessage() for r in caplog.records)
    ready = client.get("/readyz")
    assert ready.status_code == 200  # the web tier keeps serving...
    degraded = {"status": "degraded", "failing": [], "degraded": ["outbox_relay"], "stale": []}
    assert ready.json() == degraded  # ...and names it

    _run_once(OutboxRelay())  # the ACL was fixed

    assert set(OutboxEvent.objects.values_list("state", flat=True)) == {"published"}
    assert not RelayProblem.objects.exists()
    assert client.get("/readyz").json() == {"status": "ok", "failing": [], "stale": []}


@contextmanager
def _broker_refuses_topic(topic: str, error: KafkaError) -> Iterator[None]:
    """Delivery reports for `topic` (as on the cluster) say `error`; the other topics' are the broker's own."""
    real = Batch.report

    def report(self: Batch, slot: int, own: KafkaError | None, message: object) -> None:
        real(self, slot, error if self.cluster_topics[slot].endswith(topic) else own, message)

    with mock.patch.object(Batch, "report", report):
        yield


@pytest.mark.django_db(transaction=True)
def test_a_refused_topic_holds_back_only_itself_and_the_other_topic_keeps_flowing(
    kafka_bootstrap: str, settings: SettingsWrapper
) -> None:
    settings.OUTBOX_RELAY_BATCH_SIZE = 5
    with transaction.atomic():  # the refused topic's rows come first: the lowest ids, a claim's worth twice over
        for number in range(10):
            outbox.publish(invoice_generated(invoice_id=number + 1, route_id=number + 1))
    with transaction.atomic():
        for truck in range(6):
            outbox.publish(route_calculated(truck_id=truck + 1))
    relay = OutboxRelay()

    with _broker_refuses_topic("invoicing.events", KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")):
        relay.setup()
        try:
            for _ in range(4):
                relay.run_once()
        finally:
            relay.teardown()

    routing = set(OutboxEvent.objects.filter(topic="routing.events").values_list("state", flat=True))
    invoicing = set(OutboxEvent.objects.filter(topic="invoicing.events").values_list("state", flat=True))
    assert routing == {"published"}
    assert invoicing == {"pending"}


@pytest.mark.django_db(transaction=True)
def test_a_problem_another_relay_recorded_is_cleared_by_whichever_relay_next_delivers_to_the_topic(
    kafka_bootstrap: str,
) -> None:
    bystander = OutboxRelay()
    bystander.setup()  # started before the problem existed
    try:
        with transaction.atomic():
            outbox.publish(route_calculated(truck_id=1))
        with _broker_refuses(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")):
            _run_once(OutboxRelay())  # the relay that saw the refusal, then stopped
        assert RelayProblem.objects.exists()

        bystander.run_once()  # the ACL was fixed: the bystander delivers the row
    finally:
        bystander.teardown()

    assert set(OutboxEvent.objects.values_list("state", flat=True)) == {"published"}
    assert not RelayProblem.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_round_whose_rows_were_all_refused_is_not_progress(kafka_bootstrap: str) -> None:
    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
    relay = OutboxRelay()

    with _broker_refuses(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")):
        _run_once(relay)

    assert relay.heartbeat.last_batch_at is None  # the dashboard must not show a working relay


@pytest.mark.django_db(transaction=True)
def test_refusals_a_person_must_fix_never_make_the_relay_rebuild_its_producer(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture, settings: SettingsWrapper
) -> None:
    """A rebuild waits a backoff (up to 30 s) in which no topic is claimed: only unconfirmed sends justify one."""
    settings.OUTBOX_RELAY_RETRY_MAX_S = 0.01  # holds and pauses this short: the refused row is tried every round
    with transaction.atomic():
        outbox.publish(invoice_generated())
    relay = OutboxRelay()

    with _broker_refuses_topic("invoicing.events", KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")):
        relay.setup()
        try:
            for _ in range(4):  # more rounds than UNCONFIRMED_ROUNDS_BEFORE_REBUILD, each refused
                time.sleep(0.02)  # past the 0.01 s hold
                relay.run_once()
        finally:
            relay.teardown()

    assert OutboxEvent.objects.get().attempts >= 4
    assert not any("rebuilding the producer" in record.getMessage() for record in caplog.records)
