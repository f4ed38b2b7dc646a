"""Small PostgreSQL helpers every app may use: text PostgreSQL will store, and advisory-lock ids."""

from __future__ import annotations

import hashlib


def safe_text(text: str, *, limit: int | None = None) -> str:
    """`text` as PostgreSQL can store it, whatever foreign bytes it came from: a NUL becomes the four characters
    \\x00 and an unpaired surrogate its escape; cut to `limit` characters when given. Recording a failure must
    not fail itself."""
    cleaned = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return cleaned if limit is None else cleaned[:limit]


def advisory_lock_id(*parts: bytes) -> int:
    """A signed 64-bit id for `pg_advisory_xact_lock`, from the parts joined by NUL bytes (blake2b, 8 bytes).

    Each caller names its namespace in the parts, so two kinds of lock never share an id by construction;
    the id of given parts never changes between releases (a rolling deploy runs old and new code side by side).
    """
    digest = hashlib.blake2b(b"\x00".join(parts), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
