"""The refused topic (fault `refuse_topic`): what flowed while the broker refused the relay one topic, read when the
refusal is lifted (the invariant on it is `chaos.checks.refused_topic`).

Read at the lift, not at the end: a later replace_broker sends every published row again and overwrites its
`published_at`, which would erase what happened inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

ON_TIME_S = 10.0  # a row of the other topic published within this of its creation was not held back
# A row of the refused topic created this long after the broker showed the denial cannot have reached a broker
# before it (every broker applies an ACL from the metadata log within milliseconds).
DENIAL_SETTLED_S = 1.0


@dataclass(frozen=True)
class Window:
    """What the outbox and invoicing recorded between `started` and `ended` (UTC, as their timestamps are)."""

    topic: str  # refused
    other: str  # expected to flow
    started: datetime
    ended: datetime
    other_created: int  # rows of the other topic created in the window
    other_published: int  # rows of the other topic published in the window
    other_due: int  # rows of the other topic created at least ON_TIME_S before the window's end
    other_on_time: int  # of those, published within ON_TIME_S of their creation
    invoices_issued: int  # routing's events consumed and handled: the route -> invoice flow went on
    refused_published: int  # rows of the refused topic created once the denial settled, published before the lift

    @property
    def seconds(self) -> float:
        return (self.ended - self.started).total_seconds()


def read_window(
    conn: psycopg.Connection, *, topic: str, other: str, started: datetime, lifting: datetime, ended: datetime
) -> Window:
    """The window from the denial shown (`started`) to the lift shown (`ended`); `lifting`: when the lift was asked
    (a refused row published after it may have gone through the lift)."""

    def count(sql: str, *params: Any) -> int:
        return int(conn.execute(sql, params).fetchone()[0])  # type: ignore[index]

    rows = "SELECT count(*) FROM outbox_outboxevent WHERE topic = %s AND "
    return Window(
        topic=topic, other=other, started=started, ended=ended,
        other_created=count(rows + "created_at >= %s AND created_at < %s", other, started, ended),
        other_published=count(rows + "published_at >= %s AND published_at < %s", other, started, ended),
        other_due=count(rows + "created_at >= %s AND created_at < %s - make_interval(secs => %s)",
                        other, started, ended, ON_TIME_S),
        other_on_time=count(rows + "created_at >= %s AND created_at < %s - make_interval(secs => %s) "
                                   "AND published_at <= created_at + make_interval(secs => %s)",
                            other, started, ended, ON_TIME_S, ON_TIME_S),
        invoices_issued=count("SELECT count(*) FROM invoicing_invoice WHERE issued_at >= %s AND issued_at < %s",
                              started, ended),
        refused_published=count(rows + "created_at >= %s + make_interval(secs => %s) AND published_at < %s",
                                topic, started, DENIAL_SETTLED_S, lifting),
    )
