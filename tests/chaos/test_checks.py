"""The chaos run's invariants read from the database: each one fails when its guarantee is broken, and holds when
it is kept (the run itself is `make chaos`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from apps.consumers.decoding import DecodeFailure, RawMessage, decode
from apps.consumers.ledger import Failure, deadletter_record
from apps.invoicing.models import KnownCustomer
from apps.routing.models import Customer
from chaos.checks import customers_in_directory, hostile_in_ledger
from chaos.hostile import Delivered, hostile_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn() -> Iterator[psycopg.Connection]:
    """The test's own connection (inside its transaction), as the checks' psycopg connection."""
    connection.ensure_connection()
    yield connection.connection


def figures(found: list) -> dict:
    return {figure.name: figure for figure in found}


def known(customer: Customer, revision: int) -> None:
    KnownCustomer.objects.create(customer_id=customer.pk, name=customer.name, revision=revision,
                                 changed_at=timezone.now())


def test_customers_in_directory_holds_when_every_latest_revision_reached_invoicing(conn: psycopg.Connection) -> None:
    for name in ("Ada", "Bo"):
        customer = Customer.objects.create(name=name, revision=3)
        known(customer, 3)

    found = figures(customers_in_directory(conn))

    assert (found["customers"].value, found["customers_in_directory"].value) == (2, 2)
    assert not found["customers_in_directory"].failed


def test_customers_in_directory_fails_for_a_change_held_back_and_a_customer_never_announced(
    conn: psycopg.Connection,
) -> None:
    current, behind, unknown = (Customer.objects.create(name=name, revision=2) for name in ("Ada", "Bo", "Cy"))
    known(current, 2)
    known(behind, 1)

    found = figures(customers_in_directory(conn))["customers_in_directory"]

    assert found.value == 1
    assert found.failed == (f"2 customers' latest change not in invoicing's directory: {behind.pk} at revision 1 of "
                            f"2, {unknown.pk} at revision none of 2")


def record_hostile(kind: str, *, offset: int) -> Delivered:
    """A hostile message as the broker acknowledged it at `offset`, dead-lettered by its group."""
    key, value, headers = hostile_message(kind, "routing.events", serial=offset)
    raw = RawMessage(topic="routing.events", partition=0, offset=offset, key=key, value=value, headers=headers)
    with pytest.raises(DecodeFailure) as failure:
        decode(raw, group="invoicing")
    deadletter_record(group="invoicing", raw=raw, failure=Failure.from_exception(failure.value), attempts=1)
    return delivered(kind, offset=offset, headers=headers, key=key)


def delivered(
    kind: str, *, offset: int, headers: list[tuple[str, bytes]], key: bytes, generation: int = 1
) -> Delivered:
    ce_id = dict(headers).get("ce_id")
    return Delivered(kind, "routing.events", 0, offset, ce_id.decode() if ce_id else None, key, generation)


def test_hostile_in_ledger_holds_when_each_acknowledged_message_has_its_own_dead_letter(
    conn: psycopg.Connection,
) -> None:
    hostile = [record_hostile("not_json", offset=4), record_hostile("missing_headers", offset=5)]

    found = figures(hostile_in_ledger(conn, hostile))

    assert (found["hostile_injected"].value, found["hostile_in_ledger"].value) == (2, 2)
    assert not found["hostile_in_ledger"].failed


def test_a_new_message_at_an_old_dead_letters_offset_is_not_taken_for_it(conn: psycopg.Connection) -> None:
    """After the broker was replaced, offsets start again: a message acknowledged at offset 4 by the new broker is
    not the one the old broker had there, whose dead letter the ledger holds."""
    old = record_hostile("not_json", offset=4)
    key, _, headers = hostile_message("not_json", "routing.events", serial=99)
    new = delivered("not_json", offset=4, headers=headers, key=key, generation=2)

    found = figures(hostile_in_ledger(conn, [Delivered(**{**old.__dict__, "generation": 1}), new], broker_generation=2))

    assert found["hostile_in_ledger"].value == 1
    assert found["hostile_in_ledger"].failed == "no dead letter for not_json@routing.events×1"


def test_a_message_the_replaced_broker_took_with_it_unread_is_counted_not_failed(conn: psycopg.Connection) -> None:
    key, _, headers = hostile_message("nul_key", "routing.events", serial=7)
    gone = delivered("nul_key", offset=7, headers=headers, key=key, generation=1)
    kept = record_hostile("long_key", offset=0)

    found = figures(hostile_in_ledger(conn, [gone, Delivered(**{**kept.__dict__, "generation": 2})],
                                      broker_generation=2))

    assert (found["hostile_in_ledger"].value, found["hostile_lost_with_broker"].value) == (1, 1)
    assert not found["hostile_in_ledger"].failed
    assert uuid.UUID(gone.event_id or "")  # it had an identity; the broker that held it is gone
