"""The chaos run's invariants read from the database: each one fails when its guarantee is broken, and holds when
it is kept (the run itself is `make chaos`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps import outbox
from apps.consumers.decoding import DecodeFailure, RawMessage, decode
from apps.consumers.ledger import Failure, deadletter_record
from apps.invoicing.models import Invoice, KnownCustomer
from apps.outbox.models import OutboxEvent
from apps.routing.models import Customer
from chaos.checks import customers_in_directory, hostile_in_ledger, refused_topic
from chaos.hostile import Delivered, hostile_message
from chaos.refusal import Window, read_window
from tests.factories import invoice_generated, route_calculated
from tests.invoicing.factories import issued_invoice

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


# --- one topic refused ----------------------------------------------------------------------------------------

START = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


def window(**counts: int) -> Window:
    """A 20 s refusal of invoicing.events; by default routing.events flowed throughout it."""
    flowing = {"other_created": 40, "other_published": 39, "other_due": 20, "other_on_time": 20,
               "invoices_issued": 35, "refused_published": 0}
    return Window(topic="invoicing.events", other="routing.events", started=START,
                  ended=START + timedelta(seconds=20), **{**flowing, **counts})


def test_refused_topic_holds_when_the_other_topic_flowed_through_the_window() -> None:
    found = figures(refused_topic([window()], scheduled=1))

    assert [name for name, figure in found.items() if figure.failed] == []
    assert (found["refused_topic"].value, found["refusal_seconds"].value) == ("invoicing.events", 20.0)
    assert found["other_topic_published_during_refusal"].value == 39
    assert found["other_topic_on_time_during_refusal"].value == "20/20"


def test_refused_topic_fails_when_the_other_topic_stood_still_while_one_was_refused() -> None:
    """Routes were created (their rows committed) but the relay published none of them until the lift."""
    found = figures(refused_topic([window(other_published=0, other_on_time=0)], scheduled=1))

    assert found["other_topic_published_during_refusal"].failed == (
        "routing.events stood still in the window from 12:00:00 (0 published, 35 invoices)")
    assert found["other_topic_on_time_during_refusal"].failed


def test_refused_topic_fails_when_the_other_topic_was_held_back_with_the_refused_one() -> None:
    """A relay-wide backoff: a few rows went out, most waited far longer than a working relay takes."""
    found = figures(refused_topic([window(other_published=6, other_on_time=4)], scheduled=1))

    assert not found["other_topic_published_during_refusal"].failed
    assert found["other_topic_on_time_during_refusal"].failed == (
        "routing.events rows held back: fewer than 50% out within 10s in the window from 12:00:00 (4/20)")


def test_refused_topic_fails_when_the_refused_topic_went_through_as_if_nothing_was_refused() -> None:
    found = figures(refused_topic([window(refused_published=12)], scheduled=1))

    assert found["refused_topic_published_during_refusal"].failed == (
        "the broker took invoicing.events rows while it refused them: the refusal from 12:00:00 did not take")


def test_refused_topic_fails_when_no_invoice_was_issued_while_one_topic_was_refused() -> None:
    found = figures(refused_topic([window(invoices_issued=0)], scheduled=1))

    assert found["other_topic_published_during_refusal"].failed


def test_a_refusal_window_without_traffic_on_the_other_topic_fails_rather_than_proving_nothing() -> None:
    found = figures(refused_topic([window(other_created=0, other_published=0, other_due=0, other_on_time=0)],
                                  scheduled=1))

    assert found["other_topic_created_during_refusal"].failed == (
        "no routing.events rows created in the window from 12:00:00: nothing measured")


def test_a_refusal_made_but_not_measured_fails_and_a_run_without_one_only_says_none() -> None:
    assert figures(refused_topic([], scheduled=1))["refused_topic"].failed == "1 refusals made, none measured"
    assert figures(refused_topic([window()], scheduled=2))["refused_topic"].failed == "2 refusals made, 1 measured"
    none = figures(refused_topic([], scheduled=0))["refused_topic"]
    assert (none.value, none.failed) == ("none", "")


def outbox_row(topic: str, *, created: float, published: float | None) -> None:
    """A row of `topic` created `created` s after START and published `published` s after it (None: pending)."""
    event = (route_calculated() if topic == "routing.events" else invoice_generated())
    with transaction.atomic():
        event_id = outbox.publish(event)
    OutboxEvent.objects.filter(event_id=event_id).update(
        topic=topic, created_at=START + timedelta(seconds=created),
        state="published" if published is not None else "pending",
        published_at=None if published is None else START + timedelta(seconds=published))


def test_read_window_counts_only_what_happened_between_the_refusal_and_its_lift(conn: psycopg.Connection) -> None:
    outbox_row("routing.events", created=-5, published=1)  # published in the window, created before it
    outbox_row("routing.events", created=2, published=3)  # on time
    outbox_row("routing.events", created=4, published=16)  # due, late
    outbox_row("routing.events", created=15, published=None)  # created too near the end to be due
    outbox_row("routing.events", created=21, published=22)  # after the lift
    outbox_row("invoicing.events", created=1, published=None)  # refused
    outbox_row("invoicing.events", created=-9, published=0.5)  # went out as the denial took
    outbox_row("invoicing.events", created=0.5, published=0.8)  # so did this one, created as it took
    outbox_row("invoicing.events", created=5, published=19.5)  # went out as the lift was asked
    outbox_row("invoicing.events", created=3, published=12)  # went through the refusal
    for at in (3, 25):
        Invoice.objects.filter(pk=issued_invoice(route_id=int(700 + at)).pk).update(
            issued_at=START + timedelta(seconds=at))

    found = read_window(conn, topic="invoicing.events", other="routing.events", started=START,
                        lifting=START + timedelta(seconds=19), ended=START + timedelta(seconds=20))

    assert (found.other_created, found.other_published, found.other_due, found.other_on_time) == (3, 3, 2, 1)
    assert (found.invoices_issued, found.refused_published, found.seconds) == (1, 1, 20.0)
