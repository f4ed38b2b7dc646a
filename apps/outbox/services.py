"""The outbox's one verb: `publish(event)` writes the event in the caller's open transaction."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from pydantic import ValidationError

from apps.common.postgres import advisory_lock_id, int_array
from apps.common.tracing import current_traceparent
from apps.contracts.base import DomainEvent, event_class

NOTIFY_CHANNEL = "logiflow_outbox"

logger = logging.getLogger(__name__)


class OutboxError(RuntimeError):
    """`publish` was misused: outside a transaction, or with an unknown event type."""


class EventSchemaError(ValueError):
    """The event does not satisfy its schema; the caller's transaction must not commit."""

    def __init__(self, event_type: str, error: ValidationError) -> None:
        self.event_type = event_type
        self.errors = error.errors(include_url=False)
        super().__init__(f"{event_type} is invalid against its schema: {error}")


def publish(event: DomainEvent) -> uuid.UUID:
    """Write `event` to the outbox inside the current `transaction.atomic` block; returns its event id.

    If the transaction rolls back the event never existed; if it commits the relay will send it. The write is
    checked and bound here, and sent with the transaction's COMMIT (or its savepoint's RELEASE), or before the
    transaction's next statement if one comes first: as a business transaction's last write it costs no round trip
    of its own.
    """
    if not connection.in_atomic_block:
        raise OutboxError("outbox.publish() must run inside transaction.atomic(); nothing was written")
    cls = type(event)
    _require_registered(cls)
    topic, key, event_id = cls.topic(), event.partition_key(), uuid.uuid4()
    _write_at_commit(_PUBLISH, {
        "lock_id": advisory_lock_id(topic.encode(), key.encode()),
        "event_id": event_id, "topic": topic, "key": key, "event_type": cls.ce_type(), "source": cls.ce_source(),
        "payload": _validated_json(event), "traceparent": current_traceparent() or "", "created_at": timezone.now(),
        "channel": NOTIFY_CHANNEL,
    })
    return event_id


def publish_many(events: Sequence[DomainEvent], *, traceparents: Sequence[str | None] | None = None) -> list[uuid.UUID]:
    """`publish` for several events at once (a consumer batch's): the same rows, queue entries and wake-up, in one
    statement; returns the event ids in order. `traceparents[i]`, when given, is event i's trace (else the current
    one's, for all of them).

    Rows get ids in the order of `events`. The per-key advisory locks are all taken, in lock id order (two batches
    over the same keys wait for each other instead of deadlocking), before any id is drawn: per-key order is commit
    order, as for `publish`.
    """
    if not connection.in_atomic_block:
        raise OutboxError("outbox.publish_many() must run inside transaction.atomic(); nothing was written")
    if traceparents is not None and len(traceparents) != len(events):
        raise ValueError("publish_many needs one traceparent per event")
    if not events:
        return []
    current = current_traceparent() or ""
    event_ids = [uuid.uuid4() for _ in events]
    rows: list[dict[str, str]] = []
    lock_ids: set[int] = set()
    checked: set[type[DomainEvent]] = set()
    for index, event in enumerate(events):
        cls = type(event)
        if cls not in checked:
            _require_registered(cls)
            checked.add(cls)
        topic, key = cls.topic(), event.partition_key()
        lock_ids.add(advisory_lock_id(topic.encode(), key.encode()))
        rows.append({
            "event_id": str(event_ids[index]), "topic": topic, "key": key, "event_type": cls.ce_type(),
            "source": cls.ce_source(), "payload": _validated_json(event),
            "traceparent": (traceparents[index] or "") if traceparents is not None else current,
        })
    # The rows as one JSON document: client-side binding quotes each element of an array in Python.
    _write_at_commit(_PUBLISH_MANY, {
        "lock_ids": int_array(sorted(lock_ids)), "rows": json.dumps(rows, ensure_ascii=False),
        "created_at": timezone.now(), "channel": NOTIFY_CHANNEL,
    })
    return event_ids


def _require_registered(cls: type[DomainEvent]) -> None:
    if event_class(cls.ce_type()) is not cls:
        raise OutboxError(f"{cls.__name__} is not a registered event type")


def _validated_json(event: DomainEvent) -> str:
    """Re-validate at write time: `model_construct` or mutation could have bypassed the schema."""
    cls = type(event)
    try:
        return cls.model_validate(event.model_dump()).model_dump_json()
    except ValidationError as error:
        transaction.set_rollback(True)
        raise EventSchemaError(cls.ce_type(), error) from error


# The four steps of a publish, in the database function `outbox_publish` (migration outbox 0008: its plans are
# kept per session; the statement sits on every business transaction's path and travels with the COMMIT):
# 1. Per-key order = commit order: a transaction publishing for a key waits, on an advisory lock, for the
#    previous one to end. The row's id (its relay order) is drawn only after the lock is held, so ids of one key
#    are allocated in commit order.
# 2. The outbox row. 3. Its entry in the relay's queue. 4. NOTIFY to wake the relay: PostgreSQL delivers it
#    only at commit, and folds repeats within a transaction.
_PUBLISH = """
SELECT outbox_publish(%(lock_id)s, %(event_id)s, %(topic)s, %(key)s, %(event_type)s, %(source)s, %(payload)s,
                      %(traceparent)s, %(created_at)s, %(channel)s)
"""


# `_PUBLISH` for many rows: every lock first (the aggregate runs to its end before the sort hands the INSERT a row,
# so no id is drawn before all locks are held), then the rows in the given order, their queue entries, one NOTIFY.
_PUBLISH_MANY = """
WITH serialised AS (
    SELECT count(pg_advisory_xact_lock(lock_id)) AS locks
    FROM (SELECT lock_id FROM unnest(%(lock_ids)s::bigint[]) AS lock_id ORDER BY lock_id) AS ordered
),
written AS (
    INSERT INTO outbox_outboxevent
        (event_id, topic, key, event_type, source, payload, traceparent, created_at, state, attempts, last_error)
    SELECT e.event_id, e.topic, e.key, e.event_type, e.source, e.payload, e.traceparent, %(created_at)s,
           'pending', 0, ''
    FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS r(row, position)
         CROSS JOIN LATERAL jsonb_to_record(r.row)
             AS e(event_id uuid, topic text, key text, event_type text, source text, payload text, traceparent text),
         serialised
    ORDER BY r.position
    RETURNING id, topic, key
),
queued AS (INSERT INTO outbox_pending (id, topic, key) SELECT id, topic, key FROM written)
SELECT pg_notify(%(channel)s, '') WHERE EXISTS (SELECT FROM written)
"""


def _write_at_commit(sql: str, params: dict[str, object]) -> None:
    """Hand a publish to the database engine (`apps.common.db`, required by the check outbox.E001): it goes with
    the transaction's end or before its next statement, so a transaction's outbox writes reach the database in
    the order of the calls, before whatever follows them."""
    connection.defer_until_commit(sql, params)


# Failed rows back to pending and into the relay's queue, in id order; the NOTIFY wakes the relay at commit.
_RESEND = """
WITH resent AS (
    UPDATE outbox_outboxevent
    SET state = 'pending', resent_at = statement_timestamp(), resent_by = %(actor)s
    WHERE id = ANY(%(ids)s) AND state = 'failed'
    RETURNING id, topic, key
),
queued AS (INSERT INTO outbox_pending (id, topic, key) SELECT id, topic, key FROM resent ORDER BY id
           ON CONFLICT DO NOTHING)
SELECT id, pg_notify(%(channel)s, '') FROM resent ORDER BY id
"""


@transaction.atomic
def outbox_events_resend(*, event_ids: Sequence[int], actor: str) -> list[int]:
    """Send failed rows again (admin "Re-send", `manage.py outbox_resend`); returns the ids re-queued.

    Only `failed` rows change; any other id is ignored. Who and when are recorded on the row. A re-sent row
    goes out after the rows of its key published since it failed: it was refused for good once, so its
    place in the key's order was already lost, and re-sending it is a person's decision.
    """
    with connection.cursor() as cursor:
        cursor.execute(_RESEND, {"ids": sorted(event_ids), "actor": actor[:150], "channel": NOTIFY_CHANNEL})
        resent = [row_id for row_id, _ in cursor.fetchall()]
    if resent:
        logger.info("outbox: %s failed rows re-sent by %s: %s", len(resent), actor, resent)
    return resent


# Pending rows with no queue entry: written by a release older than the queue (a rolling deploy) or put back
# to 'pending' by hand. A scan (no index covers `state`), run every few minutes, not on the relay's path.
_REQUEUE_STRANDED = """
WITH queued AS (
    INSERT INTO outbox_pending (id, topic, key)
    SELECT o.id, o.topic, o.key FROM outbox_outboxevent o
    WHERE o.state = 'pending' AND NOT EXISTS (SELECT FROM outbox_pending q WHERE q.id = o.id)
    ORDER BY o.id
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT id, pg_notify(%s, '') FROM queued ORDER BY id
"""


@transaction.atomic
def outbox_events_requeue_stranded() -> list[int]:
    """Queue every pending outbox row the relay cannot see (no entry in its queue), in id order; returns them.

    A row is stranded when a release that did not write the queue entry (older than the queue, during a
    rolling deploy) published it. Rows of a transaction still open are invisible here and queue themselves
    at commit; a row queued meanwhile by someone else is skipped (ON CONFLICT).
    """
    with connection.cursor() as cursor:
        cursor.execute(_REQUEUE_STRANDED, [NOTIFY_CHANNEL])
        queued = [row_id for row_id, _ in cursor.fetchall()]
    if queued:
        logger.warning("outbox: %s pending rows had no queue entry (stranded); queued: %s", len(queued), queued[:100])
    return queued


# What a forgetful cluster had: rows published within the window go back to pending and into the queue.
_REQUEUE_FORGOTTEN = """
WITH forgotten AS (
    UPDATE outbox_outboxevent
    SET state = 'pending', published_at = NULL, partition = NULL, "offset" = NULL, last_error = %(note)s
    WHERE state = 'published' AND published_at >= statement_timestamp() - %(hours)s * interval '1 hour'
    RETURNING id, topic, key
),
queued AS (INSERT INTO outbox_pending (id, topic, key) SELECT id, topic, key FROM forgotten ORDER BY id
           ON CONFLICT DO NOTHING)
SELECT count(*) FROM forgotten
"""


@transaction.atomic
def outbox_events_requeue_forgotten(
    *, lost_marks: Sequence[tuple[str, int, int, uuid.UUID]], window_hours: float, note: str
) -> int | None:
    """The cluster lost what `lost_marks` `(topic, partition, offset, event_id)` prove it once held: re-queue
    every row published within `window_hours`, in id order, and drop all marks. Returns how many rows, or None
    when another relay already did it (the marks changed since they were read).

    Rows keep their attempts (the re-send adds one); partition, offset and published time are cleared, since
    they described the lost copy. Consumers' inboxes make the repeats harmless. A scan (no index covers
    `published_at`): this runs once per lost cluster, not on the relay's path.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT topic, partition, "offset", event_id FROM outbox_brokermark ORDER BY topic, partition FOR UPDATE'
        )
        current = {(topic, partition): (offset, event_id) for topic, partition, offset, event_id in cursor.fetchall()}
        if any(current.get((t, p)) != (o, e) for t, p, o, e in lost_marks):
            return None
        cursor.execute(_REQUEUE_FORGOTTEN, {"note": note[:2000], "hours": window_hours})
        (count,) = cursor.fetchone()
        cursor.execute("DELETE FROM outbox_brokermark")
        cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
    return count


def outbox_events_purge(
    *, older_than: timedelta | None = None, batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete published rows older than `older_than` (OUTBOX_RETENTION_HOURS); returns how many.
    `on_batch(deleted)` is called after each committed batch (a command's progress line).

    Each batch is its own short transaction, so the purge never holds locks for long. Published rows
    have left the relay's queue (outbox_pending), so deleting them never touches what the relay reads.
    Failed rows are kept: they wait for a person to look at them in the admin.
    """
    older_than = older_than if older_than is not None else timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    batch_size = batch_size or settings.OUTBOX_PURGE_BATCH_SIZE
    cutoff = timezone.now() - older_than
    purged = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            # created_at < cutoff is implied by published_at < cutoff; it bounds the created_at index scan.
            cursor.execute(
                """
                DELETE FROM outbox_outboxevent WHERE id IN (
                    SELECT id FROM outbox_outboxevent
                    WHERE created_at < %s AND state = 'published' AND published_at < %s
                    ORDER BY created_at LIMIT %s
                )
                """,
                [cutoff, cutoff, batch_size],
            )
            deleted = cursor.rowcount
        purged += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch_size:
            return purged
