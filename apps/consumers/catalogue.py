"""The event catalogue: an AsyncAPI 3.0 document generated from the event contracts and the handler registry.

Never written by hand: `manage.py asyncapi` prints it, `docs/asyncapi.yaml` is its committed copy (a test fails
when that copy is stale), `/api/asyncapi/` serves it and `/api/events/` renders it. It lives here, on the event
spine, because it needs the registry (who reads what); the contracts alone cannot say that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from apps.consumers import registry
from apps.contracts.base import EVENT_TYPES, DomainEvent

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
# Bump by hand when the document's shape (not an event) changes; events carry their own versions.
DOCUMENT_VERSION = "1.0.0"
REGENERATE = "python manage.py asyncapi --format yaml > docs/asyncapi.yaml"

GUARANTEES = (
    "At-least-once delivery: a message may arrive twice (the relay re-sends a row whose delivery it could not "
    "record; a consumer may re-read after a crash). The header `ce_id` is the event's identity and every "
    "consumer's idempotency key: handle a `ce_id` once.\n\n"
    "Per-key order: events of one Kafka key are published in commit order and stay in order on their partition. "
    "Nothing is ordered across keys.\n\n"
    "Schemas are checked when an event is written and when it is read; a message a consumer cannot handle goes to "
    "its dead-letter ledger and holds back only the later events of its aggregate. A breaking change is a new "
    "version (`.v2`), published beside the old one until every consumer handles it."
)
TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def message_id(event_class: type[DomainEvent]) -> str:
    """The message's name in the document (`RouteCalculated.v1`), also the renderer's anchor `#message-<id>`."""
    return f"{event_class.event_name}.v{event_class.version}"


def message_anchor(ce_type: str) -> str | None:
    """The catalogue page's fragment for a CloudEvents type, None for a type the contracts do not know."""
    event_class = EVENT_TYPES.get(ce_type)
    return f"message-{message_id(event_class)}" if event_class is not None else None


def asyncapi_document() -> dict[str, Any]:
    """The whole document as plain data, in a stable order (so the committed copy diffs cleanly)."""
    events = sorted(EVENT_TYPES.values(), key=lambda cls: (cls.topic(), cls.event_name, cls.version))
    readers = _readers(registry.registrations())
    schemas: dict[str, Any] = {}
    messages = {message_id(cls): _message(cls, readers, schemas) for cls in events}
    topics = sorted({cls.topic() for cls in events})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "LogiFlow domain events",
            "version": DOCUMENT_VERSION,
            "description": (
                "The events routing and invoicing exchange through the transactional outbox and Kafka, as "
                "CloudEvents 1.0 in Kafka binary mode (`ce_*` headers, JSON value). Generated from `apps/contracts` "
                f"and the handler registry: do not edit; regenerate with `{REGENERATE}`.\n\n{GUARANTEES}"
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The deployment's Kafka cluster. Topic names are prefixed by `KAFKA_TOPIC_PREFIX` "
                               "when one is set (e.g. `staging.routing.events`).",
                "variables": {"bootstrap": {
                    "default": "127.0.0.1:19092", "description": "KAFKA_BOOTSTRAP_SERVERS",
                }},
            },
        },
        "channels": {topic: _channel(topic, [cls for cls in events if cls.topic() == topic], readers)
                     for topic in topics},
        "operations": _operations(topics, events, readers),
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def asyncapi_json() -> str:
    return json.dumps(asyncapi_document(), indent=2, ensure_ascii=False) + "\n"


def asyncapi_yaml() -> str:
    header = f"# Generated from apps/contracts and the handler registry; do not edit. Regenerate: {REGENERATE}\n"
    return header + yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=100)


# --- who reads what ------------------------------------------------------------------------------------------


def _readers(registrations: Iterable[registry.Registration]) -> dict[str, dict[str, str]]:
    """Per CloudEvents type, the consumer groups with a handler for it and that handler's dotted name."""
    readers: dict[str, dict[str, str]] = {}
    for registration in sorted(registrations, key=lambda r: (r.group, r.name)):
        readers.setdefault(registration.event_class.ce_type(), {})[registration.group] = registration.name
    return readers


def _groups_on(topic: str, events: list[type[DomainEvent]], readers: dict[str, dict[str, str]]) -> list[str]:
    return sorted({group for cls in events if cls.topic() == topic for group in readers.get(cls.ce_type(), {})})


# --- pieces ----------------------------------------------------------------------------------------------------


def _channel(topic: str, events: list[type[DomainEvent]], readers: dict[str, dict[str, str]]) -> dict[str, Any]:
    publishers = sorted({cls.context for cls in events})
    groups = _groups_on(topic, events, readers)
    return {
        "address": topic,
        "title": topic,
        "description": (
            f"Published by {_names(f'`apps.{context}`' for context in publishers)} through its transactional "
            f"outbox (the relay sends a row only after its transaction committed). Read by the consumer "
            f"group{'s' if len(groups) != 1 else ''} {_names(f'`{g}`' for g in groups) or 'none yet'}. "
            "Partitioned by the Kafka key; each message says what its key names."
        ),
        "messages": {message_id(cls): {"$ref": f"#/components/messages/{message_id(cls)}"} for cls in events},
        "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operations(
    topics: list[str], events: list[type[DomainEvent]], readers: dict[str, dict[str, str]]
) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for topic in topics:
        on_topic = [cls for cls in events if cls.topic() == topic]
        for context in sorted({cls.context for cls in on_topic}):
            sent = [cls for cls in on_topic if cls.context == context]
            operations[f"{context}.publishes.{topic}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{topic}"},
                "title": f"{context} publishes to {topic}",
                "description": (
                    f"`apps.{context}`'s services call `outbox.publish(event)` inside their transaction; the relay "
                    "sends committed rows with an idempotent producer (`acks=all`), in commit order per key."
                ),
                "messages": [_channel_message(topic, cls) for cls in sent],
            }
        for group in _groups_on(topic, on_topic, readers):
            handled = [cls for cls in on_topic if group in readers.get(cls.ce_type(), {})]
            operations[f"{group}.reads.{topic}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{topic}"},
                "title": f"consumer group {group} reads {topic}",
                "description": (
                    f"`manage.py consume {group}`: each message is handled in one database transaction with an inbox "
                    "row keyed by its `ce_id` (a redelivery is a no-op); the offset is stored only after that. "
                    "A type the group has no handler for is skipped; a version of a handled type that the group "
                    "neither handles nor declares ignored is dead-lettered, the reason naming the version."
                ),
                "messages": [_channel_message(topic, cls) for cls in handled],
                "bindings": {"kafka": {
                    "groupId": {"type": "string", "enum": [group]}, "bindingVersion": KAFKA_BINDING_VERSION,
                }},
            }
    return operations


def _channel_message(topic: str, cls: type[DomainEvent]) -> dict[str, str]:
    return {"$ref": f"#/channels/{topic}/messages/{message_id(cls)}"}


def _message(
    cls: type[DomainEvent], readers: dict[str, dict[str, str]], schemas: dict[str, Any]
) -> dict[str, Any]:
    handlers = readers.get(cls.ce_type(), {})
    read_by = "; ".join(f"`{group}` (`{name}`)" for group, name in handlers.items()) or "no consumer group yet"
    key = _key_schema(cls)
    return {
        # The renderer's sidebar links to `#message-<name>` and its sections are `#message-<id>`: keep them one.
        "name": message_id(cls),
        "title": f"{cls.event_name} v{cls.version}",
        "summary": (cls.__doc__ or cls.event_name).strip().splitlines()[0],
        "description": (
            f"CloudEvents type `{cls.ce_type()}`, source `{cls.ce_source()}`, on `{cls.topic()}`.\n\n"
            f"**Published by** `apps.{cls.context}` (through its outbox). **Read by** {read_by}.\n\n"
            f"**Key** {key['description']}\n\n"
            f"**Aggregate** `{cls.aggregate}:<{cls.aggregate_field}>`: a consumer's ordering scope; a dead letter "
            "holds back the later events of its aggregate only.\n\n"
            "**Idempotency**: the header `ce_id`; at-least-once delivery, per-key order."
        ),
        "contentType": "application/json",
        "headers": _headers_schema(cls),
        "payload": _payload_schema(cls, schemas),
        "correlationId": {
            "description": "The event's identity: the idempotency key of every consumer's inbox.",
            "location": "$message.header#/ce_id",
        },
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
        "x-logiflow": {
            "ce-type": cls.ce_type(),
            "publisher": f"apps.{cls.context}",
            "consumer-groups": list(handlers),
            "key": f"{cls.key_prefix}:<{cls.key_field}>",
            "aggregate": f"{cls.aggregate}:<{cls.aggregate_field}>",
        },
    }


def _key_schema(cls: type[DomainEvent]) -> dict[str, Any]:
    field_schema = cls.model_json_schema()["properties"][cls.key_field]
    value = "[0-9]+" if field_schema.get("type") == "integer" else ".+"
    return {
        "type": "string",
        "pattern": f"^{cls.key_prefix}:{value}$",
        "description": (
            f"`{cls.key_prefix}:<{cls.key_field}>` in UTF-8 (e.g. `{cls.key_prefix}:12`): the {cls.key_prefix} "
            f"the event is about. It picks the partition, so one {cls.key_prefix}'s events stay in order."
        ),
    }


def _headers_schema(cls: type[DomainEvent]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "CloudEvents 1.0 binary content mode: the attributes travel as Kafka headers (UTF-8).",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {"type": "string", "format": "uuid",
                      "description": "The event id: unique per event, the idempotency key of every consumer."},
            "ce_source": {"type": "string", "const": cls.ce_source()},
            "ce_type": {"type": "string", "const": cls.ce_type(),
                        "description": "Name and version; a consumer without a handler for it skips it."},
            "ce_time": {"type": "string", "format": "date-time", "description": "When the event was written."},
            "content-type": {"type": "string", "const": "application/json"},
            "traceparent": {"type": "string", "pattern": TRACEPARENT,
                            "description": "W3C trace context of the request or message that caused the event "
                                           "(absent when there was none)."},
        },
    }


def _payload_schema(cls: type[DomainEvent], schemas: dict[str, Any]) -> dict[str, Any]:
    """The pydantic schema (what a consumer accepts), its nested models moved to components.schemas."""
    payload = cls.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in payload.pop("$defs", {}).items():
        if schemas.setdefault(name, schema) != schema:
            raise ValueError(
                f"{cls.__name__} v{cls.version} nests a model {name} that differs from another event's {name}: "
                "give one of them another name"
            )
    return payload


def _names(items: Iterable[str]) -> str:
    names = list(items)
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
