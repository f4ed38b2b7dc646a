"""Connectivity errors reach the log only while true: no stale "brokers are down" once a client is connected."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ClusterMetadata
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.kafka import ConnectivityLog
from apps.consumers.runtime import ConsumerWorker
from apps.outbox.relay import OutboxRelay

DOWN = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")


class Cluster:
    """A client's metadata request: answers while `up`."""

    def __init__(self, *, up: bool) -> None:
        self.up = up

    def list_topics(self, timeout: float) -> ClusterMetadata:
        if not self.up:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "timed out"))
        return ClusterMetadata()


class ErrorEvent:
    def __init__(self, error: KafkaError) -> None:
        self._error = error

    def error(self) -> KafkaError:
        return self._error


class ConnectedConsumer(Cluster):
    """A consumer that has connected, handing over the error librdkafka queued while it was connecting."""

    def __init__(self) -> None:
        super().__init__(up=True)
        self.queued = [ErrorEvent(DOWN)]

    def consume(self, num_messages: int, timeout: float) -> list[ErrorEvent]:
        queued, self.queued = self.queued, []
        return queued

    def assignment(self) -> list:  # no partitions yet: the worker's lag sample finds nothing to measure
        return []


def _down_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and "brokers" in r.getMessage()]


def test_a_consumer_does_not_log_brokers_down_it_reads_after_connecting(
    caplog: pytest.LogCaptureFixture, settings: SettingsWrapper
) -> None:
    settings.CONSUMER_UNOWNED_LAG_RESTART_S = 0  # the ownership watch reads heartbeats: no database here
    caplog.set_level(logging.DEBUG)
    worker = ConsumerWorker("invoicing")
    worker.consumer = ConnectedConsumer()  # type: ignore[assignment]
    worker.run_once()
    assert _down_lines(caplog) == []


def test_the_relay_does_not_log_brokers_down_it_reads_after_connecting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    relay = OutboxRelay()
    relay._on_client_error(DOWN)  # as librdkafka calls it from a poll
    relay._connectivity.check(Cluster(up=True))
    assert _down_lines(caplog) == []


def test_a_real_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log, cluster = ConnectivityLog("relay", probe_timeout=0), Cluster(up=False)
    for _ in range(3):
        assert log.note(DOWN)
        log.check(cluster)
    log.check(cluster)
    cluster.up = True
    log.check(cluster)
    log.check(cluster)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"relay: cannot reach the brokers: {DOWN}"),
        ("INFO", "relay: reached the brokers again"),
    ]


def test_other_errors_are_left_to_the_caller() -> None:
    log = ConnectivityLog("relay")
    assert not log.note(KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"))
    assert not log.note(KafkaError(KafkaError._ALL_BROKERS_DOWN, "down", fatal=True))


SASL_PRINCIPALS = {
    kind: {"username": f"logiflow-{kind}", "password": f"{kind}-secret"}
    for kind in ("relay", "consumer", "monitor", "admin")
}


def test_under_sasl_each_client_authenticates_as_its_process_kind(settings: SettingsWrapper) -> None:
    from apps.common.kafka import client_config, consumer_config, producer_config

    settings.KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
    settings.KAFKA_PRINCIPALS = SASL_PRINCIPALS
    who = {
        "relay's producer": producer_config(),
        "a consumer group": consumer_config("invoicing"),
        "anything else (web, beat, tools)": client_config(),
        "setup": client_config(principal="admin"),
    }
    assert {name: config["sasl.username"] for name, config in who.items()} == {
        "relay's producer": "logiflow-relay", "a consumer group": "logiflow-consumer",
        "anything else (web, beat, tools)": "logiflow-monitor", "setup": "logiflow-admin",
    }
    assert {(c["security.protocol"], c["sasl.mechanism"]) for c in who.values()} == {("SASL_SSL", "SCRAM-SHA-512")}
    assert producer_config()["sasl.password"] == "relay-secret"


def test_under_sasl_a_kind_without_credentials_stops_the_process_instead_of_connecting_anonymously(
    settings: SettingsWrapper,
) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from apps.common.kafka import producer_config

    settings.KAFKA_SECURITY_PROTOCOL = "SASL_PLAINTEXT"
    settings.KAFKA_PRINCIPALS = {**SASL_PRINCIPALS, "relay": {"username": "logiflow-relay", "password": ""}}
    with pytest.raises(ImproperlyConfigured, match="KAFKA_RELAY_USERNAME and KAFKA_RELAY_PASSWORD"):
        producer_config()


def test_without_sasl_no_credentials_are_sent(settings: SettingsWrapper) -> None:
    from apps.common.kafka import producer_config

    settings.KAFKA_SECURITY_PROTOCOL = "PLAINTEXT"
    settings.KAFKA_PRINCIPALS = SASL_PRINCIPALS
    assert not {key for key in producer_config() if key.startswith("sasl.")}


def test_only_the_relay_is_granted_write_and_only_on_the_named_topics() -> None:
    from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

    from apps.common.kafka_acls import acl_plan

    plan = acl_plan(topics=["routing.events", "invoicing.events"], groups=["invoicing", "routing"],
                    usernames={"relay": "r", "consumer": "c", "monitor": "m"})
    writes = {(b.principal, b.name) for b in plan if b.operation == AclOperation.WRITE}
    assert writes == {("User:r", "routing.events"), ("User:r", "invoicing.events")}
    groups = {(b.principal, b.name, b.operation) for b in plan if b.restype == ResourceType.GROUP}
    assert ("User:c", "invoicing", AclOperation.READ) in groups
    assert {p for p, _, op in groups if op == AclOperation.READ} == {"User:c"}
    assert {b.resource_pattern_type for b in plan} == {ResourcePatternType.LITERAL}


def test_a_consumer_asks_the_broker_to_hold_a_fetch_at_most_the_configured_wait(settings: SettingsWrapper) -> None:
    from apps.common.kafka import consumer_config

    settings.KAFKA_FETCH_WAIT_MAX_MS = 10

    assert consumer_config("invoicing")["fetch.wait.max.ms"] == 10


def test_workers_on_the_embedded_tansu_hold_a_fetch_briefly_as_tansu_answers_one_only_when_its_wait_ends() -> None:
    from apps.devstack.tansu import WORKER_ENVIRONMENT

    assert int(WORKER_ENVIRONMENT["KAFKA_FETCH_WAIT_MAX_MS"]) <= 20  # Apache Kafka answers as soon as data arrives
