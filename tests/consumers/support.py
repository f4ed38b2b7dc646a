"""Helpers for consumer tests: CloudEvents headers like the relay sends, a raw producer, a worker driver."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Producer
from django.db import transaction

from apps.common.kafka import producer_config
from apps.consumers.decoding import Decoded, RawMessage, decode
from apps.consumers.inbox import inbox_apply
from apps.consumers.ledger import Failure, deadletter_record
from apps.consumers.models import DeadLetter
from apps.consumers.runtime import ConsumerWorker
from apps.contracts.base import DomainEvent
from apps.outbox.models import OutboxEvent
from tests.consumers.testapp.events import Happened
from tests.consumers.testapp.models import Effect

Headers = list[tuple[str, bytes]]


def happened(*, key: str = "k1", scenario: str = "", seq: int = 1) -> Happened:
    return Happened(key=key, scenario=scenario, seq=seq)


def effect_seqs() -> list[int]:
    """The seqs the test handler applied for the scenarios these tests break and fix, in the order applied."""
    return list(Effect.objects.filter(scenario__in=["broken", "", "other"]).values_list("seq", flat=True))


def cloud_event_headers(event: DomainEvent, *, event_id: uuid.UUID | None = None, ce_type: str | None = None) -> Headers:
    """The headers the relay sends, built by the outbox model itself (an unsaved row)."""
    row = OutboxEvent(
        event_id=event_id or uuid.uuid4(), source=type(event).ce_source(),
        event_type=ce_type or type(event).ce_type(), created_at=datetime.now(UTC),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    return row.headers()


def raw_message(
    event: DomainEvent, *, event_id: uuid.UUID | None = None, offset: int = 0, value: bytes | None = None,
    headers: Headers | None = None, key: bytes | None = None,
) -> RawMessage:
    """A message as the consumer would read it, for service tests that need no broker (the key as the relay
    sends it, the event's partition key in UTF-8, unless given)."""
    return RawMessage(
        topic=type(event).topic(), partition=0, offset=offset, key=event.partition_key().encode() if key is None else key,
        value=event.model_dump_json().encode() if value is None else value,
        headers=cloud_event_headers(event, event_id=event_id) if headers is None else headers,
    )


def deliver_outbox_row(row: OutboxEvent, *, group: str) -> DeadLetter | None:
    """`row` applied by `group` as its consumer would, without a broker: the bytes the relay sends, decoded, run
    through the group's inbox; a failure goes to the ledger as the consumer records it (offset = the row's id)."""
    raw = RawMessage(topic=row.topic, partition=0, offset=row.pk, key=row.key.encode(), value=row.payload.encode(),
                     headers=row.headers())
    decoded = decode(raw, group=group)
    assert isinstance(decoded, Decoded), f"{group} does not handle {row.event_type}"
    try:
        with transaction.atomic():
            inbox_apply(decoded=decoded)
    except Exception as error:  # noqa: BLE001 - recorded, as the consumer records it
        failure = Failure.from_exception(error, handler=decoded.registration.name)
        return deadletter_record(group=group, raw=raw, failure=failure, attempts=1)
    return None


class RawProducer:
    """Puts bytes on a topic exactly as given: valid events, or deliberately broken ones."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.producer = Producer(producer_config())

    def send(self, *, value: bytes | None, key: str | bytes | None, headers: Headers, partition: int = 0) -> None:
        self.producer.produce(self.topic, value=value, key=key, headers=headers, partition=partition)

    def event(
        self, event: DomainEvent, *, event_id: uuid.UUID | None = None, partition: int = 0,
        key: bytes | None = None, extra_headers: Headers | None = None,
    ) -> uuid.UUID:
        """A valid event, under its own partition key unless `key` (any bytes, e.g. a Java integer key) is given."""
        event_id = event_id or uuid.uuid4()
        self.send(
            value=event.model_dump_json().encode(), key=event.partition_key() if key is None else key,
            headers=cloud_event_headers(event, event_id=event_id) + (extra_headers or []), partition=partition,
        )
        return event_id

    def flush(self) -> None:
        assert self.producer.flush(10) == 0, "messages were not delivered"


def drain(worker: ConsumerWorker, until: Callable[[], bool], *, timeout: float = 30.0) -> None:
    """Run the worker's iterations until `until()` holds (includes the group join on the first calls)."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"condition not reached within {timeout}s; counters: {worker.counters}"
        worker.run_once()
