"""Django's PostgreSQL backend, plus writes a transaction defers to its end.

`defer_until_commit(sql, params)` binds a statement now and sends it with the transaction's COMMIT, or with the
RELEASE of the savepoint that ends next, as one query: a write that must be part of the transaction but whose
result nobody reads (the outbox's `publish`, usually a transaction's last statement) costs no round trip of its
own. Any other statement on the connection sends the deferred writes first, on their own, so the transaction reads
its own writes and sees them in the order it made them. A savepoint rolled back drops what was deferred inside it
(as Django drops its `on_commit` callbacks); a rollback drops everything. The one visible difference: an error of
a deferred write (a lock timeout) is raised by the statement, RELEASE or COMMIT that sent it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import transaction
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deferred_writes: list[str] = []
        self.execute_wrappers.append(self._deferred_writes_first)

    def defer_until_commit(self, sql: str, params: dict[str, Any] | tuple | list) -> None:
        """Bind `sql` with `params` now (a bad parameter fails here, in its caller) and send it at the end of the
        current savepoint or transaction."""
        if not self.in_atomic_block:
            raise transaction.TransactionManagementError("defer_until_commit() needs an open transaction.atomic()")
        self.ensure_connection()
        self.deferred_writes.append(psycopg.ClientCursor(self.connection).mogrify(sql, params))

    def _deferred_writes_first(self, execute: Any, sql: str, params: Any, many: bool, context: dict) -> Any:
        if self.deferred_writes:
            self._send_deferred(ending=None)
        return execute(sql, params, many, context)

    def _send_deferred(self, *, ending: str | None) -> None:
        statements, self.deferred_writes = self.deferred_writes, []
        if ending is not None:
            statements.append(ending)
        # No parameters: psycopg sends the text as one simple query, several statements and one round trip. The
        # first that fails stops the rest (an ending COMMIT too) and aborts the transaction.
        with self.cursor() as cursor:
            cursor.execute(";\n".join(statements))

    def _commit(self) -> None:
        if self.deferred_writes and self.connection is not None:
            # The query ends with the COMMIT (the cursor logs it); psycopg's commit() would send nothing more.
            with self.wrap_database_errors:
                self._send_deferred(ending="COMMIT")
            return
        super()._commit()

    # Whatever is still deferred when a savepoint ends was deferred inside it: the SAVEPOINT statement that made
    # it, like any statement, sent what had been deferred before.

    def _savepoint_commit(self, sid: str) -> None:
        if self.deferred_writes:
            self._send_deferred(ending=self.ops.savepoint_commit_sql(sid))
        else:
            super()._savepoint_commit(sid)

    def _savepoint_rollback(self, sid: str) -> None:
        self.deferred_writes = []
        super()._savepoint_rollback(sid)

    def _rollback(self) -> None:
        self.deferred_writes = []
        super()._rollback()

    def _close(self) -> None:
        self.deferred_writes = []
        super()._close()
