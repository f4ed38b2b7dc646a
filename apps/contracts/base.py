"""The base of every domain event: typed, versioned, schema-checked, with a CloudEvents identity."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

EVENT_TYPES: dict[str, type[DomainEvent]] = {}


class DomainEvent(BaseModel):
    """A fact a bounded context publishes. Subclasses name their context, type, version and ordering key.

    The JSON of the model is the Kafka value; identity, time and trace travel in CloudEvents headers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    context: ClassVar[str]
    event_name: ClassVar[str]
    version: ClassVar[int]
    # The field naming the aggregate whose events must stay in order: it becomes the Kafka key.
    key_field: ClassVar[str]

    @classmethod
    def ce_type(cls) -> str:
        return f"logiflow.{cls.context}.{cls.event_name}.v{cls.version}"

    @classmethod
    def ce_source(cls) -> str:
        return f"/logiflow/{cls.context}"

    @classmethod
    def topic(cls) -> str:
        return f"{cls.context}.events"

    def partition_key(self) -> str:
        return str(getattr(self, self.key_field))


def register_event(cls: type[DomainEvent]) -> type[DomainEvent]:
    """Class decorator: make an event type known to the outbox and the consumers by its `ce_type`."""
    ce_type = cls.ce_type()
    if ce_type in EVENT_TYPES and EVENT_TYPES[ce_type] is not cls:
        raise ValueError(f"event type {ce_type} registered twice")
    if cls.key_field not in cls.model_fields:
        raise ValueError(f"{cls.__name__}.key_field {cls.key_field!r} is not a field")
    EVENT_TYPES[ce_type] = cls
    return cls


def event_class(ce_type: str) -> type[DomainEvent] | None:
    return EVENT_TYPES.get(ce_type)


def all_topics() -> list[str]:
    return sorted({cls.topic() for cls in EVENT_TYPES.values()})
