"""The base of every domain event: typed, versioned, schema-checked, with a CloudEvents identity."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

# Bounds every event shares: what the consumers' columns can store (a bigint id, an integer counter), so a topic
# writer's number past them is a schema failure (a dead letter with the reason), not a database error.
BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1
Id = Annotated[int, Field(gt=0, le=BIGINT_MAX)]
Counter = Annotated[int, Field(ge=1, le=INTEGER_MAX)]

EVENT_TYPES: dict[str, type[DomainEvent]] = {}
_NAME = re.compile(r"^[a-z][a-z_]*$")
# Validation context of a reader: `Model.model_validate_json(value, context=READING)`.
READING: dict[str, bool] = {"reading": True}


_KNOWN_FIELDS: dict[type, frozenset[str]] = {}  # a contract class -> its field names and aliases


class Contract(BaseModel):
    """A part of an event's payload: closed to writers, open to readers.

    A producer cannot write a field its version does not declare (extra="forbid": a typo fails at once), but a
    consumer validating with `context=READING` ignores fields it does not know, at every depth. That is what makes
    adding an optional field a compatible change (FULL, see apps/contracts/compat.py): a consumer still on the old
    release reads the new producer's messages, and the new consumer reads the old producer's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    @model_validator(mode="before")
    @classmethod
    def _ignore_unknown_fields_when_reading(cls, data: Any, info: ValidationInfo) -> Any:
        if not (info.context or {}).get("reading") or not isinstance(data, dict):
            return data
        known = _KNOWN_FIELDS.get(cls)
        if known is None:  # once per class: this runs for every nested model of every message a consumer reads
            known = _KNOWN_FIELDS[cls] = frozenset(cls.model_fields) | {
                field.alias for field in cls.model_fields.values() if field.alias
            }
        return {name: value for name, value in data.items() if name in known}


class DomainEvent(Contract):
    """A fact a bounded context publishes. Subclasses name their context, type, version, key and aggregate.

    The JSON of the model is the Kafka value; identity, time and trace travel in CloudEvents headers.
    """

    context: ClassVar[str]
    event_name: ClassVar[str]
    version: ClassVar[int]
    # The Kafka key is `<key_prefix>:<key_field's value>` (`truck:5`): it picks the partition, so Kafka keeps one
    # key's events in order, and it is what `publish` locks and the relay holds back. The prefix names the kind of
    # aggregate, so two event types on one topic share a key only if they key by the same thing.
    key_prefix: ClassVar[str] = ""  # required of registered events; without one the key is the bare value
    key_field: ClassVar[str]
    # The aggregate the event changes, `<aggregate>:<aggregate_field's value>` (`route:12`): a consumer's ordering
    # scope. A dead letter holds back the later events of its aggregate, whatever their key (apps.consumers).
    aggregate: ClassVar[str] = ""  # required of registered events; without one a consumer orders by the key
    aggregate_field: ClassVar[str] = ""
    # The fields that decide who or what a consumer bills or which aggregate it changes. A person's edit of a dead
    # letter that changes one of them waits for a second person with finance's permission (apps.consumers.replay).
    approval_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def ce_type(cls) -> str:
        return f"logiflow.{cls.context}.{cls.event_name}.v{cls.version}"

    @classmethod
    def ce_source(cls) -> str:
        return f"/logiflow/{cls.context}"

    @classmethod
    def topic(cls) -> str:
        return f"{cls.context}.events"

    @classmethod
    def key_of(cls, value: object) -> str:
        """The Kafka key of this type's events about `value` (e.g. a truck id)."""
        return f"{cls.key_prefix}:{value}" if cls.key_prefix else str(value)

    def partition_key(self) -> str:
        return self.key_of(getattr(self, self.key_field))

    def aggregate_id(self) -> str | None:
        """`route:12`: the aggregate this event changes, None for a type that names none."""
        return f"{self.aggregate}:{getattr(self, self.aggregate_field)}" if self.aggregate else None


def register_event(cls: type[DomainEvent]) -> type[DomainEvent]:
    """Class decorator: make an event type known to the outbox and the consumers by its `ce_type`."""
    ce_type = cls.ce_type()
    if ce_type in EVENT_TYPES and EVENT_TYPES[ce_type] is not cls:
        raise ValueError(f"event type {ce_type} registered twice")
    for name in ("key_prefix", "aggregate"):
        if not _NAME.match(getattr(cls, name)):
            raise ValueError(f"{cls.__name__}.{name} {getattr(cls, name)!r} must be a lower-case name ([a-z_]+)")
    for name in ("key_field", "aggregate_field"):
        if getattr(cls, name, None) not in cls.model_fields:
            raise ValueError(f"{cls.__name__}.{name} {getattr(cls, name, None)!r} is not a field")
    if unknown := cls.approval_fields - set(cls.model_fields):
        raise ValueError(f"{cls.__name__}.approval_fields names no field: {', '.join(sorted(unknown))}")
    for other in EVENT_TYPES.values():
        if other is not cls and other.topic() == cls.topic() and other.key_prefix == cls.key_prefix \
                and other.key_field != cls.key_field:
            raise ValueError(
                f"{cls.__name__}: the key prefix {cls.key_prefix!r} on {cls.topic()} is {other.__name__}'s key for "
                f"{other.key_field}; a prefix names one aggregate on its topic, so pick another"
            )
    EVENT_TYPES[ce_type] = cls
    return cls


def event_class(ce_type: str) -> type[DomainEvent] | None:
    return EVENT_TYPES.get(ce_type)


def all_topics() -> list[str]:
    return sorted({cls.topic() for cls in EVENT_TYPES.values()})
