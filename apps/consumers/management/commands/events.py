"""`manage.py events tail|validate`: an operator's view of the topics. `tail` prints a topic's messages decoded
(as a consumer would check them), reading assigned partitions: it joins no consumer group and commits nothing.
`validate` checks a JSON payload against an event version's schema, with the errors a consumer would record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.kafka import kafka_topic
from apps.consumers.decoding import DecodeFailure, payload_event
from apps.consumers.tail import Filters, TopicTail
from apps.contracts.base import EVENT_TYPES, DomainEvent, all_topics


class Command(BaseCommand):
    help = "tail <topic>: print a topic's messages decoded; validate <file> --type T: check a payload."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        tail = actions.add_parser("tail", help="print a topic's messages decoded (joins no group, commits nothing)")
        tail.add_argument("topic", help="e.g. routing.events (the cluster's topic prefix is added to a known one)")
        tail.add_argument("--partition", type=int, help="only this partition")
        tail.add_argument("--from-offset", type=int, help="start here in each partition (default: the end when "
                                                          "following, else the beginning)")
        tail.add_argument("--to-offset", type=int, help="stop after this offset in each partition")
        tail.add_argument("--no-follow", action="store_true", help="stop at each partition's current end")
        tail.add_argument("--json", action="store_true", dest="as_json", help="one JSON object per line")
        tail.add_argument("--type", action="append", default=[], dest="types",
                          help="only this event type: logiflow.routing.RouteCalculated.v1, without .vN, or the "
                               "bare name (repeatable)")
        tail.add_argument("--key", help="only this key (its text, or escaped as shown, e.g. \\x00\\x00\\x00\\x07)")
        tail.add_argument("--max-messages", type=int, help="stop after printing this many")
        tail.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a message")
        validate = actions.add_parser("validate", help="check a JSON payload against an event version's schema")
        validate.add_argument("file", help="a file holding the JSON payload (the Kafka value), or - for stdin")
        validate.add_argument("--type", required=True, dest="event_type",
                              help="logiflow.routing.RouteCalculated.v1, or without .vN (or the bare name) with "
                                   "--version (default: the newest version)")
        validate.add_argument("--version", type=int, help="the version, when --type names none")

    def handle(self, *args: object, action: str, **options: object) -> None:
        if action == "tail":
            self.tail(**options)  # type: ignore[arg-type]
        else:
            self.validate(**options)  # type: ignore[arg-type]

    def tail(
        self, *, topic: str, partition: int | None, from_offset: int | None, to_offset: int | None,
        no_follow: bool, as_json: bool, types: list[str], key: str | None, max_messages: int | None,
        idle_timeout: float | None, **options: object,
    ) -> None:
        if max_messages is not None and max_messages < 1:
            raise CommandError("--max-messages must be at least 1")
        name = kafka_topic(topic) if topic in all_topics() else topic
        reader = TopicTail(name, partition=partition, from_offset=from_offset, to_offset=to_offset,
                           follow=not no_follow, idle_timeout=idle_timeout)
        filters, shown = Filters(types=tuple(types), key=key), 0
        try:
            for message in reader.messages():
                if not filters.admit(message):
                    continue
                self.stdout.write(_json_line(message.as_json()) if as_json else message.as_text())
                self.stdout.flush()
                shown += 1
                if max_messages is not None and shown >= max_messages:
                    return
        except ValueError as error:
            raise CommandError(str(error)) from None
        except KeyboardInterrupt:
            return

    def validate(self, *, file: str, event_type: str, version: int | None, **options: object) -> None:
        event_class = _event_class(event_type, version)
        try:
            value = Path(file).read_bytes() if file != "-" else sys.stdin.buffer.read()
        except OSError as error:
            raise CommandError(f"cannot read {file}: {error.strerror}") from None
        try:
            event = payload_event(value, event_class)
        except DecodeFailure as failure:
            raise CommandError(f"invalid ({failure.reason}): {failure}") from None
        self.stdout.write(f"valid {event_class.ce_type()}: {event.model_dump_json()}")


def _event_class(wanted: str, version: int | None) -> type[DomainEvent]:
    def matches(ce_type: str) -> bool:
        name = ce_type.rpartition(".v")[0]
        return wanted in (ce_type, name, name.rpartition(".")[2])

    found = sorted((cls for ce_type, cls in EVENT_TYPES.items() if matches(ce_type)), key=lambda cls: cls.version)
    if version is not None:
        found = [cls for cls in found if cls.version == version]
    if not found:
        known = ", ".join(sorted(EVENT_TYPES))
        raise CommandError(f"no event type {wanted!r}{f' version {version}' if version else ''}; known: {known}")
    return found[-1]


def _json_line(shown: dict[str, object]) -> str:
    return json.dumps(shown, ensure_ascii=False, separators=(",", ":"))
