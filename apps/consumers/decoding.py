"""Turn a Kafka message (CloudEvents binary-mode headers + JSON value) into a validated event, or classify why not.

`decode` returns the typed event with its `EventMeta`, `SKIP` for a type the group does not handle, or raises
`DecodeFailure` with the ledger reason for a message no retry can fix; `read_any` checks a message of any known type
the same way, for the operators' tools (`manage.py events`). `message_scope` says which aggregate's
order a message belongs to (what a dead letter of it holds back).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from pydantic import ValidationError

from apps.common.postgres import safe_text
from apps.consumers import registry
from apps.consumers.models import DeadLetter
from apps.consumers.registry import EventMeta, Registration
from apps.contracts.base import EVENT_TYPES, READING, DomainEvent

Reason = DeadLetter.Reason
_VERSIONED_TYPE = re.compile(r"^(?P<name>.+)\.v(?P<version>[0-9]+)$")
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")


@dataclass(frozen=True)
class RawMessage:
    """What was read from the topic (or stored in the ledger): enough to decode and to dead-letter it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None  # anyone's bytes: compared, stored and replayed as bytes, never decoded
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for header_name, raw in self.headers:
            if header_name == name and raw is not None:
                return raw.decode("utf-8", errors="replace")
        return None


@dataclass(frozen=True)
class Decoded:
    event: DomainEvent
    meta: EventMeta
    registration: Registration

    @property
    def scope(self) -> bytes | None:
        """The ordering scope: the aggregate the event changes (`route:12`), whatever the key's format (an older
        release keyed by the bare number); for a type that names no aggregate, the key's bytes."""
        aggregate = self.event.aggregate_id()
        return aggregate.encode() if aggregate is not None else self.meta.key


class DecodeFailure(Exception):
    """A permanent failure: the message goes to the ledger with `reason`, never retried by the consumer."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Skip:
    """The type of `SKIP`: a message of a type the group does not handle."""

    def __repr__(self) -> str:
        return "SKIP"


SKIP: Final = Skip()


MessageId = uuid.UUID | bytes  # what makes a message that message: its event id, else the digest of its bytes


@dataclass(frozen=True)
class Identity:
    """What a message is, as far as its headers are readable: the event identity (stored on a dead letter for
    search) and the digest of its bytes. Never its place: a rebuilt broker numbers its offsets from zero again."""

    event_id: uuid.UUID | None
    event_type: str
    event_version: int | None
    digest: bytes

    @property
    def message_id(self) -> MessageId:
        """How the ledger knows the message: the CloudEvents id (also every inbox's key), or for a message
        without a readable one the digest of its key, value and headers."""
        return self.event_id if self.event_id is not None else self.digest


_MAX_VERSION = 2**31 - 1  # the ledger's column; a hostile `.v99999999999` must not fail the record


def identity(raw: RawMessage) -> Identity:
    ce_type = raw.header("ce_type") or ""
    match = _VERSIONED_TYPE.match(ce_type)
    try:
        event_id = uuid.UUID(raw.header("ce_id") or "")
    except ValueError:
        event_id = None
    version = int(match["version"]) if match and len(match["version"]) <= 10 else None
    return Identity(
        event_id=event_id, event_type=safe_text(ce_type, limit=200),
        event_version=version if version is not None and version <= _MAX_VERSION else None,
        digest=message_digest(key=raw.key, value=raw.value, headers=raw.headers),
    )


def message_digest(*, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> bytes:
    """SHA-256 of the message's bytes, unambiguously: each part length-prefixed, a missing part (None) distinct
    from an empty one, headers in order. The ledger stores it as received; an edit of the payload keeps it."""
    digest = hashlib.sha256()
    parts = [key, value, *(part for name, raw in headers for part in (name.encode("utf-8", "surrogatepass"), raw))]
    for part in parts:
        digest.update(b"\x00" if part is None else b"\x01" + len(part).to_bytes(8, "big") + part)
    return digest.digest()


def scope_of(decoded: Decoded | Skip | DecodeFailure, raw: RawMessage) -> bytes | None:
    """Whose order a message keeps: its event's aggregate when it decoded, its key's bytes when it could not be
    decoded (which aggregate an unreadable message was about cannot be known), none for a type the group skips."""
    if isinstance(decoded, Decoded):
        return decoded.scope
    return None if decoded is SKIP else raw.key


def message_scope(raw: RawMessage, *, group: str) -> bytes | None:
    """`scope_of` the message as `group` reads it, decoding it first. Never raises."""
    try:
        decoded: Decoded | Skip | DecodeFailure = decode(raw, group=group)
    except DecodeFailure as failure:
        decoded = failure
    except Exception:  # noqa: BLE001 - any message that does not decode falls back to its key
        return raw.key
    return scope_of(decoded, raw)


def decode(raw: RawMessage, *, group: str) -> Decoded | Skip:
    """The typed, schema-valid event and its envelope; `SKIP` when `group` has no handler for the type."""
    missing = [name for name in REQUIRED_HEADERS if not raw.header(name)]
    if missing:
        raise DecodeFailure(Reason.MISSING_HEADERS, f"missing CloudEvents headers: {', '.join(missing)}")
    ce_type = raw.header("ce_type") or ""
    registration = _registration(group, ce_type)
    if registration is None:
        return SKIP
    meta = _meta(raw, group=group, ce_type=ce_type)
    return Decoded(event=payload_event(raw.value, registration.event_class), meta=meta, registration=registration)


@dataclass(frozen=True)
class Reading:
    """A message as an operator sees it, whoever reads it: its event when this release knows the type and the
    message is valid, else the failure a consumer would record."""

    event: DomainEvent | None
    failure: DecodeFailure | None


def read_any(raw: RawMessage) -> Reading:
    """The event of any known type, checked as a consumer checks it (headers, then payload). Never raises."""
    try:
        missing = [name for name in REQUIRED_HEADERS if not raw.header(name)]
        if missing:
            raise DecodeFailure(Reason.MISSING_HEADERS, f"missing CloudEvents headers: {', '.join(missing)}")
        ce_type = raw.header("ce_type") or ""
        event_class = EVENT_TYPES.get(ce_type)
        if event_class is None:
            unknown = f"{ce_type!r} is not an event type (or version) this release knows"
            raise DecodeFailure(Reason.UNKNOWN_TYPE, unknown)
        _meta(raw, group="", ce_type=ce_type)
        return Reading(event=payload_event(raw.value, event_class), failure=None)
    except DecodeFailure as failure:
        return Reading(event=None, failure=failure)
    except Exception as error:  # noqa: BLE001 - an operator's view of a foreign message must not crash
        why = f"could not decode: {type(error).__name__}: {error}"
        return Reading(event=None, failure=DecodeFailure(Reason.INVALID_PAYLOAD, why))


def _registration(group: str, ce_type: str) -> Registration | None:
    """The group's handler for the type; None to skip a type it does not handle at all.

    A *version* the group does not know of a type it does handle is a permanent failure, not a skip:
    silently dropping `v2` of an event the group depends on would lose data, unless the group declares that it
    ignores that version (`registry.ignores`).
    """
    found = registry.handler_for(group, ce_type)
    if found:
        return found
    if registry.is_ignored(group, ce_type):
        return None
    match = _VERSIONED_TYPE.match(ce_type)
    if not match:
        raise DecodeFailure(Reason.MISSING_HEADERS, f"ce_type {ce_type!r} has no version suffix (.vN)")
    known = registry.handled_types(group)
    if any((m := _VERSIONED_TYPE.match(t)) and m["name"] == match["name"] for t in known):
        raise DecodeFailure(
            Reason.UNKNOWN_TYPE, f"{group} does not handle version {match['version']} of {match['name']}"
        )
    return None


def _meta(raw: RawMessage, *, group: str, ce_type: str) -> EventMeta:
    if raw.header("ce_specversion") != "1.0":
        raise DecodeFailure(Reason.MISSING_HEADERS, f"unsupported ce_specversion {raw.header('ce_specversion')!r}")
    content_type = raw.header("content-type")
    if content_type is not None and not content_type.startswith("application/json"):
        raise DecodeFailure(Reason.MISSING_HEADERS, f"unsupported content-type {content_type!r}")
    try:
        event_id = uuid.UUID(raw.header("ce_id") or "")
    except ValueError:
        raise DecodeFailure(Reason.MISSING_HEADERS, f"ce_id {raw.header('ce_id')!r} is not a UUID") from None
    try:
        time = datetime.fromisoformat(raw.header("ce_time") or "")
    except ValueError:
        raise DecodeFailure(Reason.MISSING_HEADERS, f"ce_time {raw.header('ce_time')!r} is not a timestamp") from None
    return EventMeta(
        event_id=event_id, ce_type=ce_type, source=raw.header("ce_source") or "", time=time, key=raw.key,
        traceparent=raw.header("traceparent"), topic=raw.topic, partition=raw.partition, offset=raw.offset,
        group=group,
    )


def payload_event(value: bytes | None, event_class: type[DomainEvent]) -> DomainEvent:
    """The payload validated as a consumer of `event_class` validates it, or the failure it would record."""
    if value is None:
        raise DecodeFailure(Reason.NOT_JSON, "the value is empty (tombstone)")
    try:
        return event_class.model_validate_json(value, context=READING)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise DecodeFailure(Reason.NOT_JSON, f"the value is not JSON: {error.errors()[0]['msg']}") from None
        invalid = f"{event_class.ce_type()} is invalid: {error}"
        raise DecodeFailure(Reason.INVALID_PAYLOAD, invalid) from None
