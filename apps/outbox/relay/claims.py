"""The relay's SQL: claim a batch of queued outbox rows and record what the broker said about each.

Raw SQL on purpose: the relay handles tens of thousands of rows a second and builds no model instances.
A batch's statements run on the psycopg connection the caller passes, inside the transaction it holds open
(the claim's locks live until it ends); the few statements off the batch path use Django's connection.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from apps.common.postgres import int_array, safe_text
from apps.outbox.relay.holds import Held

NOTHING_HELD = Held()

TABLE = "outbox_outboxevent"
QUEUE = "outbox_pending"  # PendingEvent: (id, topic, key) of the rows still to send

# Set on each of the relay's batch connections.
# - The queue swings from empty to a burst faster than statistics follow; a planner that believes
#   "a few pending rows" sorts the whole burst (on disk) for every claim. The relay's statements are
#   fixed and all meant to walk an index, so its sessions take bitmap and sequential scans off the table.
# - A relay commit only records what the broker already has: losing the last few in a database crash
#   means sending those rows again (duplicates, never loss), so the commit need not wait for the WAL flush.
# - No statement may block the relay for ever (a lock, a stuck server): past the relay's stall timeout it fails,
#   the open batches roll back and their rows stay pending.
_SESSION_SETTINGS = (
    "SET enable_bitmapscan = off; SET enable_seqscan = off; SET synchronous_commit = off;"
    " SET statement_timeout = {timeout_ms}"
)


def relay_session_settings(*, statement_timeout_s: float) -> str:
    return _SESSION_SETTINGS.format(timeout_ms=max(1, int(statement_timeout_s * 1000)))


# The claim: lock up to N queue rows in id order, skipping rows another relay holds, then
# read their outbox rows by primary key. Only the queue rows are locked: the outbox row is not written
# until the batch records its outcome. `= ANY(ARRAY(...))` bounds the outbox scan to the claimed ids;
# as a plain join the planner may merge-join from the outbox's first id, through every published row.
_READ_CLAIMED = f"""
SELECT o.id, o.topic, o.key, o.payload, o.event_id::text, o.source, o.event_type,
       -- ce_time exactly as OutboxEvent.headers() writes it (datetime.isoformat: no fraction when zero)
       to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
         || CASE WHEN date_part('microseconds', o.created_at)::int %% 1000000 = 0 THEN ''
                 ELSE to_char(o.created_at AT TIME ZONE 'UTC', '.US') END || 'Z',
       o.traceparent
FROM {TABLE} o
WHERE o.id = ANY(ARRAY(SELECT id FROM claimed))
ORDER BY o.id
"""
_CLAIM = (
    f"\nWITH {{floor}} claimed AS (SELECT id FROM {QUEUE} {{held}} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    + _READ_CLAIMED
)
# Rows of held topics and keys (apps.outbox.relay.holds) are left where they are, however low their ids.
# A refused topic's rows keep the lowest ids, and a claim walking the queue's primary key would read past all of
# them, every batch: the walk starts at the floor instead, the first queued id of a topic not held (below it
# there are only held topics' rows). One probe of outbox_pending_topic_id_idx per topic finds it.
_NOT_HELD = "topic <> ALL(%s::text[]) AND (topic, key) NOT IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
_FLOOR = f"""RECURSIVE firsts(topic, id) AS (
  (SELECT topic, id FROM {QUEUE} ORDER BY topic, id LIMIT 1)
  UNION ALL
  SELECT later.topic, later.id FROM firsts
  CROSS JOIN LATERAL (SELECT topic, id FROM {QUEUE} WHERE topic > firsts.topic ORDER BY topic, id LIMIT 1) later
), floor AS (SELECT min(id) AS id FROM firsts WHERE topic <> ALL(%s::text[])),"""
_ABOVE_FLOOR = "id >= (SELECT id FROM floor) AND "
# A probing topic (refused before, its hold over) offers its first queued row only; the rest stays held.
_FIRST_OF_TOPICS = f"""
WITH claimed AS (
  SELECT id FROM {QUEUE}
  WHERE id = ANY(ARRAY(SELECT (SELECT id FROM {QUEUE} WHERE topic = t ORDER BY id LIMIT 1) FROM unnest(%s::text[]) t))
  ORDER BY id FOR UPDATE SKIP LOCKED
)"""
_CLAIM_ANY = _CLAIM.format(floor="", held="")
_CLAIM_NOT_HELD = _CLAIM.format(floor=_FLOOR, held="WHERE " + _ABOVE_FLOOR + _NOT_HELD)
_CLAIM_FIRSTS = _FIRST_OF_TOPICS + _READ_CLAIMED

# Is any queued row below the claim's last id neither in the claim nor in flight from this relay?
# No: every claimed row's predecessors of its key are ours, and all of it may go (the common case).
# (ORDER BY id LIMIT 1 keeps it on the queue's primary key; a bare EXISTS tempts the planner into a scan.)
_FOREIGN_ROWS_BELOW = f"""
{{floor}}
SELECT id FROM {QUEUE}
WHERE id < %s AND id NOT IN (SELECT unnest(%s::bigint[])) {{held}}
ORDER BY id LIMIT 1
"""
_FOREIGN_ROWS_BELOW_ANY = _FOREIGN_ROWS_BELOW.format(floor="", held="")
_FOREIGN_ROWS_BELOW_NOT_HELD = _FOREIGN_ROWS_BELOW.format(
    floor="WITH " + _FLOOR.rstrip(","), held="AND " + _ABOVE_FLOOR + _NOT_HELD
)

# Yes: for each claimed row, the previous queued row of its (topic, key) — the order `publish` locks —
# (NOT EXISTS turned into "which one": one backward probe of outbox_pending_topic_key_idx), so the relay
# can hold back rows that would overtake it.
_PREVIOUS_OF_KEY = f"""
SELECT c.id,
       (SELECT p.id FROM {QUEUE} p
         WHERE p.topic = c.topic AND p.key = c.key AND p.id < c.id
         ORDER BY p.id DESC LIMIT 1)
FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS c(id, topic, key)
"""

# Confirmed rows leave the queue (a delete only stamps the queue tuple) and are marked in the outbox by a
# HOT update: no index covers the columns written here. The ANY makes each a primary-key lookup.
_PUBLISHED = f"""
WITH dequeued AS (DELETE FROM {QUEUE} WHERE id = ANY(%s::bigint[]))
UPDATE {TABLE} o
SET state = 'published', published_at = statement_timestamp(), attempts = o.attempts + 1,
    partition = d.partition, "offset" = d.offset
FROM unnest(%s::bigint[], %s::int[], %s::bigint[]) AS d(id, partition, "offset")
WHERE o.id = d.id AND o.id = ANY(%s::bigint[])
"""

_FAILED = f"""
WITH dequeued AS (DELETE FROM {QUEUE} WHERE id = ANY(%s))
UPDATE {TABLE} o
SET state = 'failed', attempts = o.attempts + 1, last_error = d.error
FROM unnest(%s::bigint[], %s::text[]) AS d(id, error)
WHERE o.id = d.id AND o.id = ANY(%s)
"""

# Transient: the row stays queued (and 'pending'); only the attempt and the error are recorded.
_RETRIED = f"""
UPDATE {TABLE} o
SET attempts = o.attempts + 1, last_error = d.error
FROM unnest(%s::bigint[], %s::text[]) AS d(id, error)
WHERE o.id = d.id AND o.id = ANY(%s)
"""

# A refusal a person must fix, one row per (error, topic); repeated refusals add up.
_PROBLEMS = """
INSERT INTO outbox_relayproblem AS p (code, topic, message, rows, first_seen_at, last_seen_at)
SELECT code, topic, message, rows, statement_timestamp(), statement_timestamp()
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[]) AS n(code, topic, message, rows)
ORDER BY topic, code
ON CONFLICT (code, topic) DO UPDATE
SET message = EXCLUDED.message, rows = p.rows + EXCLUDED.rows, last_seen_at = EXCLUDED.last_seen_at
"""

# What the cluster acknowledged, per partition: only ever moved up, and only within one cluster (a mark of
# another cluster stays until the relay's check has dealt with it). After a silent reset the old, higher
# mark stays, and the check finds the log no longer holds its event.
_MARKS = """
INSERT INTO outbox_brokermark AS m (topic, partition, "offset", event_id, cluster_id, marked_at)
SELECT topic, partition, "offset", event_id, %s, statement_timestamp()
FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::uuid[]) AS n(topic, partition, "offset", event_id)
ORDER BY topic, partition
ON CONFLICT (topic, partition) DO UPDATE
SET "offset" = EXCLUDED."offset", event_id = EXCLUDED.event_id, cluster_id = EXCLUDED.cluster_id,
    marked_at = EXCLUDED.marked_at
WHERE m."offset" < EXCLUDED."offset" AND m.cluster_id IN (EXCLUDED.cluster_id, '')
"""

MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class Delivered:
    id: int
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Refused:
    id: int
    error: str


def claim(conn: Any, limit: int, *, in_flight: Collection[int] = (), held: Held = NOTHING_HELD) -> list[tuple]:
    """Rows `(id, topic, key, payload, event_id, source, event_type, ce_time, traceparent, previous_id)`.

    The queue rows stay locked until `conn`'s transaction ends. `previous_id` is the
    previous queued row of the same (topic, key) when that one might not be ours (None when all are):
    `in_flight` are the rows this relay sent in batches still open on its other connections. Rows of `held`
    topics and keys are not claimed (nor are they rows of other keys that claimed rows must wait for).
    """
    floor_params: list[list[str]] = []
    held_params: list[list[str]] = []
    claim_sql, below_sql = _CLAIM_ANY, _FOREIGN_ROWS_BELOW_ANY
    if held:
        keys = list(zip(*held.keys, strict=True)) or [(), ()]
        topics = [*held.topics, *held.probing]
        floor_params = [topics]
        held_params = [topics, list(keys[0]), list(keys[1])]
        claim_sql, below_sql = _CLAIM_NOT_HELD, _FOREIGN_ROWS_BELOW_NOT_HELD
    with conn.cursor() as cursor:
        rows = []
        if held.probing:
            cursor.execute(_CLAIM_FIRSTS, [list(held.probing)])
            rows = cursor.fetchall()
        cursor.execute(claim_sql, [*floor_params, *held_params, limit - len(rows)])
        rows = sorted([*rows, *cursor.fetchall()])
        if not rows:
            return []
        ids = [row[0] for row in rows]
        cursor.execute(below_sql, [*floor_params, ids[-1], int_array([*ids, *in_flight]), *held_params])
        if cursor.fetchone() is None:
            return [(*row, None) for row in rows]
        cursor.execute(_PREVIOUS_OF_KEY, [ids, [row[1] for row in rows], [row[2] for row in rows]])
        previous = dict(cursor.fetchall())
    return [(*row, previous[row[0]]) for row in rows]


def mark_published(conn: Any, delivered: Sequence[Delivered]) -> None:
    """Dequeue rows the broker acknowledged and record where they landed."""
    if not delivered:
        return
    ids = int_array([d.id for d in delivered])
    partitions, offsets = int_array([d.partition for d in delivered]), int_array([d.offset for d in delivered])
    with conn.cursor() as cursor:
        cursor.execute(_PUBLISHED, [ids, ids, partitions, offsets, ids])


def mark_failed(conn: Any, refused: Sequence[Refused]) -> None:
    """Dequeue rows the broker refused for good: 'failed', with the error, for a person to look at."""
    if not refused:
        return
    ids = [r.id for r in refused]
    with conn.cursor() as cursor:
        cursor.execute(_FAILED, [ids, ids, [safe_text(r.error, limit=MAX_ERROR_LENGTH) for r in refused], ids])


def mark_retried(conn: Any, refused: Sequence[Refused]) -> None:
    """Count an attempt and keep the error of rows that stay queued, to be sent again."""
    if not refused:
        return
    ids = [r.id for r in refused]
    with conn.cursor() as cursor:
        cursor.execute(_RETRIED, [ids, [safe_text(r.error, limit=MAX_ERROR_LENGTH) for r in refused], ids])


def record_problems(conn: Any, problems: Sequence[tuple[str, str, str, int]]) -> None:
    """`(error name, topic, message, rows)` refusals only a person can fix: upserted into RelayProblem."""
    if not problems:
        return
    codes, topics, messages, rows = zip(*problems, strict=True)
    with conn.cursor() as cursor:
        texts = [safe_text(m, limit=MAX_ERROR_LENGTH) for m in messages]
        cursor.execute(_PROBLEMS, [list(codes), list(topics), texts, list(rows)])


def clear_problems(conn: Any, topics: Collection[str]) -> None:
    """A row of these topics was confirmed: whatever was refusing them is fixed."""
    if not topics:
        return
    with conn.cursor() as cursor:
        cursor.execute("DELETE FROM outbox_relayproblem WHERE topic = ANY(%s)", [sorted(topics)])


def problem_topics() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT topic FROM outbox_relayproblem")
        return {topic for (topic,) in cursor.fetchall()}


def record_marks(conn: Any, marks: Sequence[tuple[str, int, int, str]], *, cluster_id: str) -> None:
    """`(topic, partition, offset, event_id)`: the latest acknowledged message of each partition (BrokerMark)."""
    if not marks:
        return
    topics, partitions, offsets, event_ids = zip(*marks, strict=True)
    with conn.cursor() as cursor:
        cursor.execute(_MARKS, [cluster_id, list(topics), list(partitions), list(offsets), list(event_ids)])


def broker_marks() -> list[tuple]:
    """Every BrokerMark as `(topic, partition, offset, event_id, cluster_id)`."""
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT topic, partition, "offset", event_id, cluster_id FROM outbox_brokermark ORDER BY topic, partition'
        )
        return cursor.fetchall()


def forget_marks(marks: Collection[tuple[str, int, int]]) -> None:
    """Drop `(topic, partition, offset)` marks whose message retention removed: the next ack writes a new one."""
    with connection.cursor() as cursor:
        for topic, partition, offset in marks:
            cursor.execute(
                'DELETE FROM outbox_brokermark WHERE topic = %s AND partition = %s AND "offset" = %s',
                [topic, partition, offset],
            )
