"""A race between two transactions on real connections: one holds a lock, the other must wait for it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection, connections, transaction


def race_on_lock(
    *, hold: Callable[[], object], then: Callable[[], object], before_commit: Callable[[], object] | None = None,
) -> list[BaseException]:
    """Run `hold` in a transaction kept open on its own connection, start `then` on another connection,
    wait until `then` blocks on a lock, run `before_commit` (if any) in the holder's transaction, commit it;
    return the errors either raised."""
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with transaction.atomic():
                hold()
                held.set()
                release.wait(timeout=30)
                if before_commit is not None:
                    before_commit()
        except BaseException as error:  # noqa: BLE001 - reported to the test
            errors.append(error)
            held.set()
        finally:
            connections.close_all()

    def waiter() -> None:
        try:
            then()
        except BaseException as error:  # noqa: BLE001 - reported to the test
            errors.append(error)
        finally:
            connections.close_all()

    holding = threading.Thread(target=holder)
    holding.start()
    assert held.wait(timeout=30)
    waiting = threading.Thread(target=waiter)
    waiting.start()
    _wait_until_blocked_or_finished(waiting)
    release.set()
    holding.join(timeout=30)
    waiting.join(timeout=30)
    return errors


def _wait_until_blocked_or_finished(thread: threading.Thread) -> None:
    """Until `thread` waits on a lock held by another backend (or ended): then the race is set up."""
    with connection.cursor() as cursor:
        for _ in range(600):
            if not thread.is_alive():
                return
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            thread.join(timeout=0.05)
    raise AssertionError("the second transaction neither blocked nor finished")
