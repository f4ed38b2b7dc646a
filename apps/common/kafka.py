"""Kafka client configuration and topic provisioning, shared by the relay and the consumers."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


def kafka_topic(name: str) -> str:
    """The topic on the cluster for a logical topic name (`routing.events`): KAFKA_TOPIC_PREFIX + name."""
    return f"{settings.KAFKA_TOPIC_PREFIX}{name}"


# librdkafka's settings: names to scalars, plus the callbacks some clients take (error_cb, logger).
KafkaConfig = dict[str, Any]


# Who a client is on a cluster with SASL, by what its process does (the ACLs `manage.py kafka_acls` creates):
# relay writes the event topics (and reads them back to check the broker's memory); consumer reads them and
# commits its groups; monitor only describes them and the groups (lag, health checks: web, beat, tools); admin
# creates topics and ACLs at setup and is used by nothing that runs for long.
Principal = Literal["relay", "consumer", "monitor", "admin"]


def client_config(*, principal: Principal = "monitor", **overrides: object) -> KafkaConfig:
    """librdkafka's settings for a client of `principal`'s kind; the least trusted kind unless one is named."""
    config: KafkaConfig = {
        "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
        "client.id": "logiflow",
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 5000,
        **security_config(principal),
    }
    config.update(settings.KAFKA_CLIENT_CONFIG)
    config.update(overrides)
    return config


def security_config(principal: Principal) -> KafkaConfig:
    """security.protocol and, under SASL, `principal`'s credentials (KAFKA_<KIND>_USERNAME/PASSWORD)."""
    protocol = settings.KAFKA_SECURITY_PROTOCOL.upper()
    if not protocol.startswith("SASL_"):
        return {"security.protocol": protocol}
    credentials = settings.KAFKA_PRINCIPALS.get(principal, {})
    username, password = credentials.get("username"), credentials.get("password")
    if not username or not password:
        kind = principal.upper()
        raise ImproperlyConfigured(
            f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_{kind}_USERNAME and KAFKA_{kind}_PASSWORD "
            f"for this process's Kafka client ({principal})"
        )
    return {"security.protocol": protocol, "sasl.mechanism": settings.KAFKA_SASL_MECHANISM,
            "sasl.username": username, "sasl.password": password}


def producer_config(*, principal: Principal = "relay", **overrides: object) -> KafkaConfig:
    """Idempotent, fully acknowledged producer: no duplicates from retries, per-partition order kept."""
    return client_config(
        principal=principal,
        **{
            "enable.idempotence": True,
            "acks": "all",
            # Keyed messages land on the partition a Java client would choose.
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "compression.type": "none",
            **overrides,
        }
    )


def consumer_config(group: str, *, principal: Principal = "consumer", **overrides: object) -> KafkaConfig:
    """At-least-once consumer: offsets are stored by the application only after its transaction commits."""
    return client_config(
        principal=principal,
        **{
            "group.id": group,
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.KAFKA_SESSION_TIMEOUT_MS,
            "fetch.wait.max.ms": settings.KAFKA_FETCH_WAIT_MAX_MS,
            "heartbeat.interval.ms": max(1000, settings.KAFKA_SESSION_TIMEOUT_MS // 3),
            "partition.assignment.strategy": settings.KAFKA_ASSIGNMENT_STRATEGY,
            **overrides,
        }
    )


def ensure_topics(
    topics: list[str], *, partitions: int | None = None, timeout: float = 30.0
) -> dict[str, str]:
    """Create missing topics; existing ones are left alone. Returns topic -> 'created' | 'exists'.

    Retries until `timeout` while the broker is still starting, so it can run right after the broker. Creating
    topics is the admin principal's (setup), never a running process's.
    """
    partitions = partitions or settings.KAFKA_TOPIC_PARTITIONS
    admin = AdminClient(client_config(principal="admin"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _create_missing(admin, topics, partitions)
        except KafkaException as error:
            if time.monotonic() >= deadline:
                raise
            logger.info("broker not ready for topic creation (%s); retrying", error)
            time.sleep(0.5)


def _create_missing(admin: AdminClient, topics: list[str], partitions: int) -> dict[str, str]:
    existing = set(admin.list_topics(timeout=5).topics)
    result = {topic: "exists" for topic in topics if topic in existing}
    wanted = [
        NewTopic(topic, num_partitions=partitions, replication_factor=settings.KAFKA_TOPIC_REPLICATION_FACTOR)
        for topic in topics
        if topic not in existing
    ]
    if not wanted:
        return result
    for topic, future in admin.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result()
            result[topic] = "created"
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            result[topic] = "exists"
    return result


# Errors that say "cannot reach the cluster" (and nothing about a message): they can be stale by the time they
# are read, see ConnectivityLog.
CONNECTIVITY_ERRORS = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE})


class ConnectivityLog:
    """Logs a client's broker-connectivity errors only while they are true: an outage once (WARNING), its end
    once (INFO).

    librdkafka queues such an error when it happens and hands it over at the next poll, often after the client
    has connected (a worker started just before the broker, a broker restart already over): logged at once it
    prints "1/1 brokers are down" below lines showing the client at work. So `note` only holds the error, and
    `check`, called from the worker's loop outside librdkafka callbacks, asks the cluster for metadata: an answer
    makes the held error stale (dropped, DEBUG), none makes it the start of an outage.
    """

    def __init__(self, name: str, *, probe_timeout: float = 2.0) -> None:
        self.name = name
        self.probe_timeout = probe_timeout
        self._held: KafkaError | None = None
        self._down = False

    def note(self, error: KafkaError) -> bool:
        """Hold `error` if it is about connectivity (True); anything else is the caller's to log (False)."""
        if error.fatal() or error.code() not in CONNECTIVITY_ERRORS:
            return False
        self._held = error
        return True

    def check(self, client: object) -> None:
        """Decide about a held error (or, during an outage, whether it is over) by a metadata request."""
        if self._held is None and not self._down:
            return
        held, self._held = self._held, None
        try:
            client.list_topics(timeout=self.probe_timeout)  # type: ignore[attr-defined] # any client of confluent_kafka
        except KafkaException as error:
            if not self._down:
                logger.warning("%s: cannot reach the brokers: %s", self.name, held or error)
                self._down = True
            return
        if self._down:
            logger.info("%s: reached the brokers again", self.name)
            self._down = False
        elif held is not None:
            logger.debug("%s: dropped a stale connectivity error (%s): the brokers answer", self.name, held)
