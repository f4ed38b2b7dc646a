"""Who may write the event topics, on Apache Kafka with SASL/SCRAM and the authorizer on, as docker-compose.yml runs
it: after `manage.py kafka_acls`, a producer that is not the relay is refused, and the relay and a consumer work
with their own principals."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from pytest_django.fixtures import Settings

from apps import outbox
from apps.common.kafka import Principal, client_config, consumer_config, ensure_topics, kafka_topic
from apps.consumers.models import InboxEntry
from apps.consumers.positions import outside_positions
from apps.consumers.runtime import ConsumerWorker
from apps.contracts import RouteCalculated, all_topics
from apps.devstack.apache_kafka import ApacheKafkaBroker, Sasl, why_not_apache_kafka
from apps.devstack.process import free_port
from apps.invoicing.models import Invoice
from apps.outbox.models import OutboxEvent
from tests.consumers.support import drain
from tests.invoicing.factories import BillingAccountFactory, three_stop_route
from tests.outbox.support import drain_in_process
from tests.support import brokers

pytestmark = [
    pytest.mark.skipif(
        brokers.test_broker() != "kafka",
        reason="SASL and ACLs are Apache Kafka's (Tansu has neither): runs in the Kafka lane, `make test-kafka`",
    ),
    pytest.mark.skipif(bool(why_not_apache_kafka()), reason=why_not_apache_kafka() or "Apache Kafka can run"),
    pytest.mark.timeout(300),
]

ROUTING_EVENTS = RouteCalculated.topic()


def _secret() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A one-node Apache Kafka with SASL/SCRAM-SHA-512 and the authorizer, its topics and `kafka_acls` applied;
    yields the settings that point LogiFlow's clients at it."""
    users = {"logiflow-relay": _secret(), "logiflow-consumer": _secret(), "logiflow-monitor": _secret()}
    sasl = Sasl(admin_password=_secret(), users=users)
    directory = Path(tmp_path_factory.mktemp("secured-kafka"))
    broker = ApacheKafkaBroker(port=free_port(), data_dir=directory / "data", log_path=directory / "kafka.log",
                               sasl=sasl)
    broker.start()
    principals = {kind: {"username": f"logiflow-{kind}", "password": users[f"logiflow-{kind}"]}
                  for kind in ("relay", "consumer", "monitor")}
    principals["admin"] = {"username": sasl.admin, "password": sasl.admin_password}
    secured = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
               "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_PRINCIPALS": principals, "KAFKA_TOPIC_PREFIX": ""}
    try:
        with override_settings(**secured):
            ensure_topics(all_topics())
            call_command("kafka_acls")
            call_command("kafka_acls")  # idempotent: a second run (every deployment runs it) changes nothing
        yield secured
    finally:
        broker.stop()


@pytest.fixture
def on_secured_kafka(secured_kafka: dict[str, object], settings: Settings) -> dict[str, object]:
    for name, value in secured_kafka.items():
        setattr(settings, name, value)
    return secured_kafka


def produce_once(config: dict[str, object], topic: str) -> tuple[KafkaError | None, list[KafkaError]]:
    """One message with `config`: its delivery error (None when written) and the client-level errors seen."""
    errors: list[KafkaError] = []
    outcome: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 30_000, "error_cb": errors.append})
    producer.produce(topic, key=b"route-1", value=b'{"forged": true}', on_delivery=lambda e, _m: outcome.append(e))
    producer.flush(60)
    return (outcome[0] if outcome else KafkaError(KafkaError._TIMED_OUT)), errors


@pytest.mark.parametrize("principal", ["consumer", "monitor"])
def test_a_producer_with_a_principal_other_than_the_relays_is_refused_on_routing_events(
    on_secured_kafka: dict[str, object], principal: Principal,
) -> None:
    # A plain producer, as an intruder would use: no idempotence to trip over first.
    config = client_config(principal=principal, **{"acks": "all"})
    error, _ = produce_once(config, kafka_topic(ROUTING_EVENTS))
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_a_producer_with_unknown_credentials_cannot_even_authenticate(on_secured_kafka: dict[str, object]) -> None:
    config = client_config(principal="relay", **{"sasl.username": "logiflow-relay", "sasl.password": "guessed",
                                                 "message.timeout.ms": 10_000})
    error, client_errors = produce_once(config, kafka_topic(ROUTING_EVENTS))
    assert error is not None, "a guessed password wrote to routing.events"
    assert KafkaError._AUTHENTICATION in {e.code() for e in client_errors}, client_errors


def test_a_producer_without_credentials_is_not_served(on_secured_kafka: dict[str, object]) -> None:
    config = client_config(principal="monitor", **{"security.protocol": "PLAINTEXT", "message.timeout.ms": 10_000})
    for key in ("sasl.mechanism", "sasl.username", "sasl.password"):
        config.pop(key)
    error, _ = produce_once(config, kafka_topic(ROUTING_EVENTS))
    assert error is not None, "an unauthenticated client wrote to routing.events"


@pytest.mark.django_db(transaction=True)
def test_the_relay_and_the_invoicing_consumer_work_with_their_principals(
    on_secured_kafka: dict[str, object],
) -> None:
    """The relay publishes with its principal; invoicing reads with its own, issues the invoice and commits its
    group, which the monitor principal reads from outside (lag 0)."""
    route_id = 880_001
    BillingAccountFactory(customer_id=9301)
    with transaction.atomic():
        event_id = outbox.publish(three_stop_route(route_id=route_id, customer_id=9301, truck_id=31))
    drain_in_process(timeout=60)
    assert OutboxEvent.objects.get(event_id=event_id).state == OutboxEvent.State.PUBLISHED

    worker = ConsumerWorker("invoicing")
    worker.setup()
    try:
        drain(worker, lambda: Invoice.objects.filter(route_id=route_id).exists(), timeout=90)
    finally:
        worker.teardown()  # commits the stored offsets
    assert InboxEntry.objects.filter(event_id=event_id).exists()

    topic = kafka_topic(ROUTING_EVENTS)
    positions = [p for p in outside_positions("invoicing", [ROUTING_EVENTS], timeout=10) if p.topic == topic]
    assert sum(p.high for p in positions) >= 1
    assert [p for p in positions if p.committed != p.high] == [], positions


def test_the_consumer_principal_cannot_join_a_group_that_is_not_its_own(
    on_secured_kafka: dict[str, object],
) -> None:
    errors: list[KafkaError] = []
    consumer = Consumer(consumer_config("not-a-logiflow-group", **{"log_level": 0, "error_cb": errors.append}))
    refused = KafkaError.GROUP_AUTHORIZATION_FAILED
    try:
        consumer.subscribe([kafka_topic(ROUTING_EVENTS)])
        deadline = time.monotonic() + 60
        while refused not in {e.code() for e in errors} and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            assert message is None or message.error() is not None, "read routing.events in a foreign group"
            if message is not None:
                errors.append(message.error())
        assert refused in {e.code() for e in errors}, errors
        with pytest.raises(KafkaException):
            consumer.commit(offsets=[TopicPartition(kafka_topic(ROUTING_EVENTS), 0, 0)], asynchronous=False)
    finally:
        consumer.close()
