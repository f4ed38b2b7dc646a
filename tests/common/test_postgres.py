"""The small PostgreSQL helpers: text PostgreSQL will store, and advisory-lock ids that never change."""

from __future__ import annotations

import pytest

from apps.common.postgres import advisory_lock_id, safe_text

# Computed with the code these ids came from (outbox.services._write, consumers.services._lock_id): a rolling
# deploy runs old and new processes side by side, so they must take the very same locks.
#   outbox:    blake2b(f"{topic}\x00{key}".encode(), digest_size=8), signed big-endian
#   consumers: blake2b(b"consumers\x00" + group.encode() + b"\x00" + key, digest_size=8), signed big-endian


@pytest.mark.parametrize(
    ("topic", "key", "expected"),
    [("routing.events", "truck-7", 8906160377755890114), ("invoicing.events", "route-é", -5929503422506028792)],
)
def test_the_outbox_publish_lock_id_is_the_one_older_releases_take(topic: str, key: str, expected: int) -> None:
    assert advisory_lock_id(topic.encode(), key.encode()) == expected


@pytest.mark.parametrize(
    ("group", "key", "expected"),
    [
        ("invoicing", b"route-42", 7387446075758871498),
        ("routing", b"\x00\x00\x00\x07", -1163580862128409483),  # a Java integer key
        ("invoicing", b"\xff\xfe", 634417531330481998),  # not UTF-8
    ],
)
def test_the_consumer_key_lock_id_is_the_one_older_releases_take(group: str, key: bytes, expected: int) -> None:
    assert advisory_lock_id(b"consumers", group.encode(), key) == expected


def test_a_lock_id_fits_a_postgres_bigint() -> None:
    assert -(2**63) <= advisory_lock_id(b"consumers", b"g", b"\xff" * 300) < 2**63


def test_safe_text_escapes_a_nul_as_four_characters() -> None:
    assert safe_text("a\x00b") == "a\\x00b"


def test_safe_text_escapes_an_unpaired_surrogate() -> None:
    assert safe_text("key \udcff!") == "key \\udcff!"
    safe_text("key \udcff!").encode("utf-8")  # storable: strict UTF-8 no longer fails


def test_safe_text_cuts_to_the_limit_after_escaping() -> None:
    assert safe_text("x" * 10, limit=4) == "xxxx"
    assert safe_text("\x00abc", limit=6) == "\\x00ab"
    assert safe_text("short", limit=100) == "short"
    assert safe_text("text as is") == "text as is"
