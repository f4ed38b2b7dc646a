"""Small PostgreSQL helpers every app may use: text PostgreSQL will store, advisory-lock ids, a cheap bulk insert."""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, JSONField, Model


def safe_text(text: str, *, limit: int | None = None) -> str:
    """`text` as PostgreSQL can store it, whatever foreign bytes it came from: a NUL becomes the four characters
    \\x00 and an unpaired surrogate its escape; cut to `limit` characters when given. Recording a failure must
    not fail itself."""
    cleaned = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return cleaned if limit is None else cleaned[:limit]


def int_array(values: Sequence[int]) -> str:
    """An integer array as PostgreSQL's text literal, for a `%s::bigint[]` parameter: psycopg adapts a list element
    by element in Python (about 0.5 µs each), which on the relay's path cost more than the statement it feeds."""
    return "{" + ",".join(map(str, values)) + "}"


def advisory_lock_id(*parts: bytes) -> int:
    """A signed 64-bit id for `pg_advisory_xact_lock`, from the parts joined by NUL bytes (blake2b, 8 bytes).

    Each caller names its namespace in the parts, so two kinds of lock never share an id by construction;
    the id of given parts never changes between releases (a rolling deploy runs old and new code side by side).
    """
    digest = hashlib.blake2b(b"\x00".join(parts), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def insert_rows(objs: Sequence[Model]) -> None:
    """INSERT new instances of one model in one statement, in order, and give each its primary key, as
    `bulk_create` does; the rows travel as one JSON document (`jsonb_to_recordset`).

    For wide batches (a consumer's 500 invoices, 2,000 lines) this is the cheap path: `bulk_create` sends one
    array per column, and the client-side binding quotes every element of every array in Python. Fields are
    prepared as `save()` prepares them; the database coerces each JSON value with its column type's input.
    """
    if not objs:
        return
    model = type(objs[0])
    opts = model._meta
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each attribute of the `connection` proxy is a lookup
    fields = [f for f in opts.concrete_fields if not (f.primary_key and f.get_internal_type().endswith("AutoField"))]
    quote = db.ops.quote_name
    for obj in objs:  # a related object saved after this one was built: take its key now, as bulk_create does
        obj._prepare_related_fields_for_save(operation_name="insert_rows")
    rows = [
        {f.column: _json_value(f, f.pre_save(obj, True), db) for f in fields} | {"_position": position}
        for position, obj in enumerate(objs)
    ]
    columns = ", ".join(quote(f.column) for f in fields)
    types = ", ".join(f"{quote(f.column)} {f.db_type(db)}" for f in fields)
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(opts.db_table)} ({columns}) SELECT {columns} "
            f"FROM jsonb_to_recordset(%s::jsonb) AS r({types}, _position integer) ORDER BY _position "
            f"RETURNING {quote(opts.pk.column)}",
            [json.dumps(rows, default=_json_default, ensure_ascii=False)],
        )
        keys = [key for (key,) in cursor.fetchall()]
    for obj, key in zip(objs, keys, strict=True):
        obj.pk = key
        obj._state.adding = False
        obj._state.db = db.alias


def _json_value(field: Field, value: Any, db: BaseDatabaseWrapper) -> Any:  # noqa: ANN401 - any field's value
    if isinstance(field, JSONField):
        return value  # the document itself, nested in the row (its column is jsonb)
    return field.get_db_prep_save(value, db)


def _json_default(value: Any) -> str:  # noqa: ANN401 - whatever json cannot encode itself
    """Exact text forms: a Decimal's digits, an ISO date or time with all its microseconds, a UUID."""
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    raise TypeError(f"insert_rows cannot send {type(value).__name__}")
