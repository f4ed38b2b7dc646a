"""Reading a topic for a person (`manage.py events tail`): partitions assigned directly, so no consumer group is
joined and nothing is committed; each message shown as a consumer would check it, foreign bytes escaped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from apps.common.kafka import client_config
from apps.consumers.decoding import RawMessage, Reading, read_any
from apps.consumers.models import bytes_text

VALUE_SHOWN = 2000  # bytes of an invalid value shown, escaped
# A group id only this tool uses, new each run: librdkafka wants one, but assigning partitions never joins it,
# and with auto-commit off and no commit call it never holds an offset.
TOOL_GROUP = "logiflow-tool-events-tail-"


@dataclass(frozen=True)
class TailedMessage:
    raw: RawMessage
    timestamp_ms: int | None
    reading: Reading

    @property
    def ce_type(self) -> str | None:
        return self.raw.header("ce_type")

    @property
    def trace_id(self) -> str | None:
        parts = (self.raw.header("traceparent") or "").split("-")
        return parts[1] if len(parts) == 4 else None

    def key_text(self) -> str | None:
        return bytes_text(self.raw.key) if self.raw.key is not None else None

    def headers_text(self) -> list[tuple[str, str | None]]:
        return [(name, bytes_text(value) if value is not None else None) for name, value in self.raw.headers]

    def as_json(self) -> dict[str, Any]:
        event, failure = self.reading.event, self.reading.failure
        shown: dict[str, Any] = {
            "topic": self.raw.topic, "partition": self.raw.partition, "offset": self.raw.offset,
            "timestamp": _time(self.timestamp_ms), "key": self.key_text(), "type": self.ce_type,
            "trace_id": self.trace_id, "headers": self.headers_text(), "valid": event is not None,
            "payload": event.model_dump(mode="json") if event is not None else None,
            "reason": failure.reason if failure else None, "error": str(failure) if failure else None,
        }
        if event is None:
            shown["value"] = _value_text(self.raw.value)
        return shown

    def as_text(self) -> str:
        key = f'"{self.key_text()}"' if self.raw.key is not None else "(none)"
        lines = [
            f"{self.raw.topic}[{self.raw.partition}]@{self.raw.offset} {_time(self.timestamp_ms) or ''} key={key} "
            f"{self.ce_type or '(no ce_type)'}",
            "  headers " + (" ".join(f"{name}={value}" for name, value in self.headers_text()) or "(none)"),
            f"  trace {self.trace_id or '(none)'}",
        ]
        if self.reading.event is not None:
            lines.append(f"  payload {self.reading.event.model_dump_json()}")
        else:
            failure = self.reading.failure
            lines.append(f"  INVALID ({failure.reason if failure else '?'}): {failure}")
            lines.append(f"  value {_value_text(self.raw.value)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Filters:
    """Which messages to show: a type (`logiflow.routing.RouteCalculated.v1`, without its version, or the bare
    name `RouteCalculated`) and a key (as text, or escaped as shown)."""

    types: tuple[str, ...] = ()
    key: str | None = None

    def admit(self, message: TailedMessage) -> bool:
        ce_type = message.ce_type or ""
        if self.types and not any(_type_matches(ce_type, wanted) for wanted in self.types):
            return False
        return self.key is None or message.raw.key is not None and self.key in (
            message.key_text(), message.raw.key.decode("utf-8", "replace"),
        )


def _type_matches(ce_type: str, wanted: str) -> bool:
    unversioned = ce_type.rpartition(".v")[0]
    return wanted in (ce_type, unversioned, unversioned.rpartition(".")[2])


class TopicTail:
    """One topic's messages in each partition's order, from `from_offset` (default: the end when following, else
    the beginning) up to `to_offset` (inclusive) or, without `follow`, the partition's end."""

    def __init__(
        self, topic: str, *, partition: int | None = None, from_offset: int | None = None,
        to_offset: int | None = None, follow: bool = True, idle_timeout: float | None = None,
        poll_timeout: float = 0.5,
    ) -> None:
        self.topic, self.partition, self.from_offset, self.to_offset = topic, partition, from_offset, to_offset
        self.follow, self.idle_timeout, self.poll_timeout = follow, idle_timeout, poll_timeout

    def messages(self) -> Iterator[TailedMessage]:
        consumer = Consumer(client_config(principal="consumer", **{
            "group.id": f"{TOOL_GROUP}{uuid.uuid4().hex[:12]}", "enable.auto.commit": False,
            "enable.auto.offset.store": False, "enable.partition.eof": True, "auto.offset.reset": "earliest",
            "client.id": "logiflow-events-tail",
        }))
        try:
            partitions = self._partitions(consumer)
            start = self.from_offset
            if start is None:
                start = OFFSET_END if self.follow else OFFSET_BEGINNING
            consumer.assign([TopicPartition(self.topic, number, start) for number in partitions])
            yield from self._read(consumer, set(partitions))
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer) -> list[int]:
        metadata = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            raise ValueError(f"no topic {self.topic!r} on the cluster ({metadata.error if metadata else 'absent'})")
        numbers = sorted(metadata.partitions)
        if self.partition is None:
            return numbers
        if self.partition not in numbers:
            raise ValueError(f"{self.topic} has partitions {numbers}, not {self.partition}")
        return [self.partition]

    def _read(self, consumer: Consumer, open_partitions: set[int]) -> Iterator[TailedMessage]:
        last_seen = time.monotonic()
        while open_partitions:
            if self.idle_timeout is not None and time.monotonic() - last_seen > self.idle_timeout:
                return
            message = consumer.poll(self.poll_timeout)
            if message is None:
                continue
            number = cast(int, message.partition())
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and not self.follow:
                    self._close(consumer, open_partitions, number)
                elif error.fatal():
                    raise KafkaException(error)
                continue
            last_seen = time.monotonic()
            if number not in open_partitions:
                continue
            offset = cast(int, message.offset())
            if self.to_offset is not None and offset > self.to_offset:
                self._close(consumer, open_partitions, number)
                continue
            yield tailed(message)
            if self.to_offset is not None and offset >= self.to_offset:
                self._close(consumer, open_partitions, number)

    def _close(self, consumer: Consumer, open_partitions: set[int], number: int) -> None:
        open_partitions.discard(number)
        consumer.pause([TopicPartition(self.topic, number)])


def tailed(message: Message) -> TailedMessage:
    """The message as bytes and its reading; nothing in a foreign message may raise out of here."""
    try:
        headers = cast(list[tuple[str, bytes | None]], list(message.headers() or []))
    except Exception as error:  # noqa: BLE001 - e.g. a header name that is not UTF-8
        headers = [("(unreadable headers)", str(error).encode())]
    raw = RawMessage(
        topic=cast(str, message.topic()), partition=cast(int, message.partition()),
        offset=cast(int, message.offset()), key=message.key(), value=message.value(), headers=headers,
    )
    kind, timestamp = message.timestamp()
    return TailedMessage(raw=raw, timestamp_ms=timestamp if kind else None, reading=read_any(raw))


def _time(timestamp_ms: int | None) -> str | None:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat() if timestamp_ms else None


def _value_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    shown = bytes_text(value[:VALUE_SHOWN])
    return shown + f"... ({len(value)} bytes)" if len(value) > VALUE_SHOWN else shown
