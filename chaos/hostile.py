"""Hostile messages written straight into LogiFlow's topics with a raw producer: bytes no LogiFlow producer
sends, but any producer on the cluster may. None of them can be applied, so the group that reads the topic
must record each one in its dead-letter ledger and go on; each is told apart by its event id (`ce_id`), or by its
key where it has no CloudEvents headers, at the (topic, partition, offset) the broker acknowledged.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import KafkaError, KafkaException, Message, Producer

logger = logging.getLogger("chaos")

# topic -> (the group that reads it, the event type LogiFlow publishes on it)
TOPICS = {
    "routing.events": ("invoicing", "logiflow.routing.RouteCalculated"),
    "invoicing.events": ("routing", "logiflow.invoicing.InvoiceGenerated"),
}
KINDS = (
    "nul_key", "non_utf8_key", "long_key", "nul_header", "not_json", "unknown_version", "invalid_payload",
    "oversized", "missing_headers",
)
# Valid JSON that no event's schema accepts: with valid headers the message decodes as far as the schema.
SCHEMA_INVALID = b'{"chaos": "schema-invalid payload", "route_id": "not a number"}'
OVERSIZED_BYTES = 1_500_000  # above the 1 MB default of producers and of a consumer's partition fetch


@dataclass(frozen=True)
class Delivered:
    kind: str
    topic: str
    partition: int
    offset: int
    event_id: str | None  # its ce_id header (None for `missing_headers`)
    key: bytes
    generation: int = 1  # the broker that acknowledged it (replace_broker starts the next one, empty)

    @property
    def group(self) -> str:
        return TOPICS[self.topic][0]


def hostile_message(kind: str, topic: str, serial: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of one hostile message. Unless the kind is about them, the key is one no real
    aggregate has (so no real key is parked behind it) and the value is schema-invalid."""
    key = f"chaos-hostile-{serial}".encode()
    value = SCHEMA_INVALID
    headers = _cloudevents(topic)
    if kind == "nul_key":
        key = b"\x00\x00\x00\x07"  # a Java producer's integer key 7
    elif kind == "non_utf8_key":
        key = b"\xff\xfe\xc3\x28" + str(serial).encode()
    elif kind == "long_key":
        key = b"k" * 240 + str(serial).encode()
    elif kind == "nul_header":
        headers.append(("x-chaos-note", b"before\x00after"))
    elif kind == "not_json":
        value = b"<html>this is not JSON</html>"
    elif kind == "unknown_version":
        headers = [(name, b"%s.v99" % TOPICS[topic][1].encode() if name == "ce_type" else raw) for name, raw in headers]
    elif kind == "oversized":
        value = b'{"padding": "' + b"x" * OVERSIZED_BYTES + b'"}'
    elif kind == "missing_headers":
        headers = []
    elif kind != "invalid_payload":
        raise ValueError(f"unknown hostile kind {kind!r}")
    return key, value, headers


def _cloudevents(topic: str) -> list[tuple[str, bytes]]:
    event_type = TOPICS[topic][1]
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", f"/logiflow/{event_type.split('.')[1]}".encode()),
        ("ce_type", f"{event_type}.v1".encode()),
        ("ce_time", datetime.now(UTC).isoformat().replace("+00:00", "Z").encode()),
        ("content-type", b"application/json"),
    ]


class Injector:
    """A raw confluent-kafka producer; a message counts as injected once the broker acknowledged it."""

    def __init__(self, kafka: dict[str, str]) -> None:
        """`kafka`: the address and, where the broker has SASL, the admin's credentials (it may write anywhere)."""
        self.producer = Producer({
            **kafka,
            "client.id": "logiflow-chaos-hostile",
            "acks": "all",
            "message.max.bytes": 4 * OVERSIZED_BYTES,
            "message.timeout.ms": 120_000,  # longer than any broker pause of the schedule
        })
        self.delivered: list[Delivered] = []
        self.refused: list[tuple[str, str, str]] = []  # (kind, topic, error)
        self.produced = 0
        self.generation = 1  # the broker now behind the address (the stack's broker_generation)

    def inject_all(self, topic: str) -> None:
        """One message of every kind into `topic`."""
        for kind in KINDS:
            self.produced += 1
            key, value, headers = hostile_message(kind, topic, self.produced)
            ce_id = dict(headers).get("ce_id")
            sent = (ce_id.decode() if ce_id else None, key)
            try:
                self.producer.produce(
                    topic, key=key, value=value, headers=headers,
                    on_delivery=lambda error, message, kind=kind, sent=sent: self._report(kind, sent, error, message),
                )
            except (BufferError, KafkaException) as error:  # refused before it left: not injected
                self.refused.append((kind, topic, str(error)))
                logger.warning("hostile %s into %s refused by the producer: %s", kind, topic, error)
            self.producer.poll(0)

    def poll(self) -> None:
        self.producer.poll(0)

    def flush(self, *, timeout: float) -> None:
        self.producer.flush(timeout)

    def close(self, *, timeout: float) -> int:
        """Wait (bounded) for the outstanding acknowledgements, then let the producer go (before the broker
        stops, or it keeps reconnecting); returns how many acknowledgements are still unknown."""
        unknown = self.producer.flush(timeout)
        del self.producer
        return unknown

    def _report(self, kind: str, sent: tuple[str | None, bytes], error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.refused.append((kind, message.topic(), str(error)))
            logger.warning("hostile %s into %s not acknowledged: %s", kind, message.topic(), error)
            return
        event_id, key = sent
        self.delivered.append(Delivered(kind, message.topic(), message.partition(), message.offset(), event_id, key,
                                        self.generation))
