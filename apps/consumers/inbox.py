"""Applying an event through the inbox: the group's handler runs once per (group, event id), one event at a
time or a run at once through a batch handler; a stored dead letter re-runs the same way; old rows are purged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from opentelemetry.trace import SpanKind

from apps.common.tracing import batch_spans, log_context, otel_enabled, trace_context
from apps.consumers import registry
from apps.consumers.decoding import SKIP, Decoded, DecodeFailure, RawMessage, decode
from apps.consumers.models import DeadLetter, DeadLetterEdit, InboxEntry, bytes_text


@transaction.atomic
def inbox_apply(*, decoded: Decoded) -> bool:
    """Run the group's handler for `decoded` unless the group already applied the event; True if it ran.

    Runs in a savepoint of the caller's transaction, so a failing handler takes its inbox row with it.
    """
    meta = decoded.meta
    if not _inbox_insert(group=meta.group, event_id=meta.event_id):
        return False
    with _process_span(meta), log_context(**log_ids(decoded.event)):
        decoded.registration.handler(decoded.event, meta)
    return True


def _process_span(meta: registry.EventMeta) -> AbstractContextManager[str]:
    return trace_context(
        meta.traceparent, event_id=str(meta.event_id), name=f"process {meta.topic}", kind=SpanKind.CONSUMER,
        attributes=messaging_attributes(meta) if otel_enabled() else None,
    )


def messaging_attributes(meta: registry.EventMeta) -> dict[str, str | int]:
    """OpenTelemetry messaging attributes of a consumed message (the key shown as text, never trusted)."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.destination.name": meta.topic, "messaging.consumer.group.name": meta.group,
        "messaging.message.id": str(meta.event_id), "messaging.destination.partition.id": str(meta.partition),
        "messaging.kafka.offset": meta.offset,
    }
    if meta.key is not None:
        attributes["messaging.kafka.message.key"] = bytes_text(meta.key)
    return attributes


def log_ids(event: object) -> dict[str, object]:
    """The route, invoice and customer an event is about (ids, never names), for the log lines of its handling."""
    return {name: getattr(event, name) for name in ("route_id", "invoice_id", "customer_id") if hasattr(event, name)}


def _inbox_insert(*, group: str, event_id: Any) -> bool:
    opts = InboxEntry._meta
    qn = connection.ops.quote_name
    params = [
        group,
        opts.get_field("event_id").get_db_prep_value(event_id, connection),
        opts.get_field("processed_at").get_db_prep_value(timezone.now(), connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(opts.db_table)} ({qn('group')}, {qn('event_id')}, {qn('processed_at')}) "
            f"VALUES (%s, %s, %s) ON CONFLICT ({qn('group')}, {qn('event_id')}) DO NOTHING",
            params,
        )
        return cursor.rowcount == 1


@transaction.atomic
def inbox_apply_many(*, decoded: Sequence[Decoded]) -> list[bool]:
    """Apply a run of events of one registration through its batch handler: one inbox statement, one call.

    All or nothing, in a savepoint of the caller's transaction: if the batch handler raises, no inbox row and
    no effect of the run remain. Returns, per event, True if it was new (handed to the batch handler) and False
    for a duplicate (applied before, or an earlier copy in this run), as `inbox_apply` would one by one.
    """
    registration = decoded[0].registration
    if registration.batch_handler is None or any(item.registration is not registration for item in decoded):
        raise ValueError("inbox_apply_many needs events of one registration that has a batch handler")
    fresh = _inbox_insert_many(group=decoded[0].meta.group, event_ids=[item.meta.event_id for item in decoded])
    applied: list[bool] = []
    for item in decoded:
        applied.append(item.meta.event_id in fresh)
        fresh.discard(item.meta.event_id)  # a second copy of an event in the same run is a duplicate
    new = [(item.event, item.meta) for item, is_new in zip(decoded, applied, strict=True) if is_new]
    if new:
        spans = [(meta.traceparent, f"process {meta.topic}", messaging_attributes(meta)) for _, meta in new] \
            if otel_enabled() else []
        with batch_spans(spans) as parents:
            if parents is not None:  # each message's work continues under its own process span
                new = [
                    (event, replace(meta, traceparent=parent))
                    for (event, meta), parent in zip(new, parents, strict=True)
                ]
            registration.batch_handler(new)
    return applied


def _inbox_insert_many(*, group: str, event_ids: list[Any]) -> set[Any]:
    """Insert the inbox rows of `event_ids` in one statement; returns the ids that were not there yet."""
    opts = InboxEntry._meta
    qn = connection.ops.quote_name
    id_field = opts.get_field("event_id")
    processed_at = opts.get_field("processed_at").get_db_prep_value(timezone.now(), connection)
    rows = [(group, id_field.get_db_prep_value(event_id, connection), processed_at) for event_id in event_ids]
    with connection.cursor() as cursor:
        # Rows are inserted in the VALUES order, so of two copies of an event in the run the first one wins.
        cursor.execute(
            f"INSERT INTO {qn(opts.db_table)} ({qn('group')}, {qn('event_id')}, {qn('processed_at')}) "
            f"VALUES {', '.join(['(%s, %s, %s)'] * len(rows))} "
            f"ON CONFLICT ({qn('group')}, {qn('event_id')}) DO NOTHING RETURNING {qn('event_id')}",
            [value for row in rows for value in row],
        )
        return {id_field.to_python(row[0]) for row in cursor.fetchall()}


def inbox_purge(
    *, older_than: timedelta | None = None, batch_size: int = 10_000, on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete inbox rows past retention, in short transactions; returns how many were deleted.
    `on_batch(deleted)` is called after each committed batch (a command's progress line).

    Retention must exceed how far back a topic can ever be re-read, or an old event could apply twice.
    """
    cutoff = timezone.now() - (older_than or timedelta(days=settings.CONSUMER_INBOX_RETENTION_DAYS))
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(InboxEntry.objects.filter(processed_at__lt=cutoff).values_list("id", flat=True)[:batch_size])
            if not ids:
                return deleted
            batch = InboxEntry.objects.filter(id__in=ids).delete()[0]
        deleted += batch
        if on_batch is not None:
            on_batch(batch)


# --- stored messages (dead letters) run again -------------------------------------------------------------


def stored_message(dead_letter: DeadLetter) -> RawMessage:
    """The message as the consumer read it: the same key bytes and headers (the value as last edited)."""
    return RawMessage(
        topic=dead_letter.topic, partition=dead_letter.partition, offset=dead_letter.offset,
        key=dead_letter.key_bytes(), value=bytes(dead_letter.value), headers=dead_letter.header_pairs(),
    )


def apply_stored(dead_letter: DeadLetter) -> bool:
    """Decode the stored message and run it through the inbox of the dead letter's group (only that group); an
    edited one carries its edit's id in the meta."""
    decoded = decode(stored_message(dead_letter), group=dead_letter.group)
    if decoded is SKIP:
        gone = f"{dead_letter.group} no longer handles {dead_letter.event_type}"
        raise DecodeFailure(DeadLetter.Reason.UNKNOWN_TYPE, gone)
    assert isinstance(decoded, Decoded)
    edit_id = dead_letter.edits.filter(status=DeadLetterEdit.Status.APPLIED).order_by("-id").values_list(
        "id", flat=True
    ).first()
    if edit_id is not None:  # the value is a person's edit: the handler may say so on what it writes
        decoded = replace(decoded, meta=replace(decoded.meta, edit_id=edit_id))
    return inbox_apply(decoded=decoded)
