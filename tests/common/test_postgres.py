"""The small PostgreSQL helpers: text PostgreSQL will store, and advisory-lock ids that never change."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from apps.common.postgres import advisory_lock_id, int_array, safe_text

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


@pytest.mark.django_db
def test_insert_rows_stores_every_field_as_bulk_create_does_and_sets_the_keys() -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from apps.common.postgres import insert_rows
    from apps.invoicing.models import Invoice
    from tests.invoicing.factories import BillingAccountFactory

    account = BillingAccountFactory()
    values = {
        "customer": account, "route_calculation": 3, "source_event_id": uuid.uuid4(),
        "issued_at": datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC), "due_date": date(2026, 12, 26),
        "customer_name": 'O\'Neil "Ltd" \\ é\n', "billing_address": "{1,2}", "currency": "EUR",
        "vat_rate_percent": Decimal("20.00"), "net_total": Decimal("-0.01"), "vat_total": Decimal("123456789012.34"),
        "gross_total": Decimal("0"), "route_summary": {"stops": [{"name": "Ankara", "lat": 39.9334}], "n": None},
    }
    ours = [Invoice(number=f"LF-2026-00000{i}", route_id=2**40 + i, **values) for i in (1, 2)]
    insert_rows(ours)
    [django] = Invoice.objects.bulk_create([Invoice(number="LF-2026-000003", route_id=3, **values)])

    assert [invoice.pk for invoice in ours] == sorted(invoice.pk for invoice in ours) and not ours[0]._state.adding
    stored = {invoice.pk: invoice for invoice in Invoice.objects.all()}
    fields = [f.attname for f in Invoice._meta.concrete_fields if f.attname not in ("id", "number", "route_id")]
    for invoice in ours:
        assert (stored[invoice.pk].number, stored[invoice.pk].route_id) == (invoice.number, invoice.route_id)
        assert {f: getattr(stored[invoice.pk], f) for f in fields} == {f: getattr(stored[django.pk], f) for f in fields}


@pytest.mark.django_db
def test_insert_rows_takes_the_key_of_a_related_object_saved_after_the_row_was_built() -> None:
    from apps.common.postgres import insert_rows
    from apps.invoicing.models import Invoice, InvoiceLine
    from apps.invoicing.services.issuing import invoice_issue_for_route
    from tests.invoicing.factories import BillingAccountFactory, three_stop_route

    BillingAccountFactory()
    template = invoice_issue_for_route(route=three_stop_route(route_id=1))
    invoice = Invoice(**{f.attname: getattr(template, f.attname) for f in Invoice._meta.concrete_fields
                         if f.attname not in ("id", "number", "route_id")}, number="LF-2026-999999", route_id=2)
    line = InvoiceLine(invoice=invoice, position=1, kind="distance", description="d", quantity=1, unit="km",
                       unit_price=1, amount=1)  # built before its invoice has a key
    insert_rows([invoice])
    insert_rows([line])

    assert InvoiceLine.objects.get(pk=line.pk).invoice_id == invoice.pk


@pytest.mark.django_db
def test_an_integer_array_literal_reads_back_as_the_same_integers() -> None:
    values = [0, 1, -7, 2**62, 42]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::bigint[], %s::bigint[]", [int_array(values), int_array([])])
        assert cursor.fetchone() == (values, [])
