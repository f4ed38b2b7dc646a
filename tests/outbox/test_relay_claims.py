"""The relay's claim SQL: which queued rows a claim takes, and what it has to read to find them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections

from apps.outbox.relay import claims
from apps.outbox.relay.holds import Held

REFUSED, HEALTHY = "invoicing.events", "routing.events"


def _queue(topic: str, first: int, count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO outbox_outboxevent (id, event_id, topic, key, event_type, source, payload, state, attempts,"
            " created_at, last_error, traceparent)"
            " SELECT g, gen_random_uuid(), %s, 'k' || (g %% 50), 'T', 's', '{}', 'pending', 0, now(), '', ''"
            " FROM generate_series(%s, %s) AS g",
            [topic, first, first + count - 1],
        )
        cursor.execute("INSERT INTO outbox_pending (id, topic, key) SELECT id, topic, key FROM outbox_outboxevent"
                       " WHERE id BETWEEN %s AND %s", [first, first + count - 1])
        cursor.execute("ANALYZE outbox_pending")


@pytest.fixture
def batch_connection() -> Iterator[Any]:
    """A connection as the relay's batches have one: its session settings, a transaction of its own."""
    database = connections.create_connection(DEFAULT_DB_ALIAS)
    database.ensure_connection()
    conn = database.connection
    conn.autocommit = True
    conn.execute(claims.relay_session_settings(statement_timeout_s=10))
    conn.autocommit = False
    yield conn
    conn.rollback()
    database.close()


def _queue_rows_read(conn: Any) -> int:
    """Queue tuples this transaction has read so far, by index or sequential scan."""
    row = conn.execute(
        "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) FROM pg_stat_xact_user_tables"
        " WHERE relname = 'outbox_pending'"
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.django_db(transaction=True)
def test_a_claim_skips_a_held_topics_backlog_without_reading_it(batch_connection: Any) -> None:
    _queue(REFUSED, 1, 5_000)  # the refused topic's rows keep the lowest ids
    _queue(HEALTHY, 5_001, 300)

    rows = claims.claim(batch_connection, 100, held=Held(topics=(REFUSED,)))

    assert [row[0] for row in rows] == list(range(5_001, 5_101))
    assert _queue_rows_read(batch_connection) < 1_000  # not the 5,000 held rows ahead of them


@pytest.mark.django_db(transaction=True)
def test_a_claim_with_a_held_topic_still_takes_the_other_topics_rows_in_id_order_and_skips_held_keys(
    batch_connection: Any,
) -> None:
    _queue(HEALTHY, 1, 10)
    _queue(REFUSED, 11, 10)
    _queue("tracking.events", 21, 10)
    _queue(HEALTHY, 31, 10)

    held = Held(topics=(REFUSED,), keys=((HEALTHY, "k1"),))
    rows = claims.claim(batch_connection, 25, held=held)

    # id 1 is the held key's (k1); 11-20 are the held topic's
    assert [row[0] for row in rows] == [*range(2, 11), *range(21, 37)]
    assert all(row[1] != REFUSED for row in rows)


@pytest.mark.django_db(transaction=True)
def test_a_topic_tried_again_after_its_hold_offers_only_its_first_row(batch_connection: Any) -> None:
    _queue(REFUSED, 1, 2_000)
    _queue(HEALTHY, 2_001, 300)

    rows = claims.claim(batch_connection, 100, held=Held(probing=(REFUSED,)))

    assert [row[0] for row in rows] == [1, *range(2_001, 2_100)]
    assert _queue_rows_read(batch_connection) < 1_000
