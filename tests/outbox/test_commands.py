"""`manage.py outbox_resend`: failed rows back to the relay, refused input refused loudly."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from apps import outbox
from apps.outbox.models import OutboxEvent, PendingEvent
from tests.factories import route_calculated
from tests.outbox.support import drain_in_process


def _rows(count: int, *, failed: int) -> list[OutboxEvent]:
    with transaction.atomic():
        for truck in range(1, count + 1):
            outbox.publish(route_calculated(truck_id=truck))
    rows = list(OutboxEvent.objects.order_by("id"))
    for row in rows[:failed]:
        OutboxEvent.objects.filter(pk=row.pk).update(state="failed", last_error="Broker: Message size too large")
        PendingEvent.objects.filter(event=row).delete()
    return rows


@pytest.mark.django_db(transaction=True)
def test_all_failed_rows_are_resent_and_then_published(kafka_bootstrap: str) -> None:
    _rows(3, failed=2)

    call_command("outbox_resend", "--all-failed")

    assert OutboxEvent.objects.filter(state="failed").count() == 0
    resent = OutboxEvent.objects.exclude(resent_at=None)
    assert resent.count() == 2
    assert all(by.startswith("manage.py outbox_resend (") for by in resent.values_list("resent_by", flat=True))
    drain_in_process()
    assert set(OutboxEvent.objects.values_list("state", flat=True)) == {"published"}


@pytest.mark.django_db
def test_ids_that_are_not_failed_are_refused_and_nothing_is_resent() -> None:
    failed, pending, _ = _rows(3, failed=1)

    with pytest.raises(CommandError, match=rf"\[{pending.pk}, 999999\]"):
        call_command("outbox_resend", "--ids", str(failed.pk), str(pending.pk), "999999")

    assert OutboxEvent.objects.get(pk=failed.pk).state == "failed"


@pytest.mark.django_db
def test_ids_of_failed_rows_are_resent() -> None:
    failed, _, _ = _rows(3, failed=1)

    call_command("outbox_resend", "--ids", str(failed.pk))

    assert OutboxEvent.objects.get(pk=failed.pk).state == "pending"
    assert PendingEvent.objects.filter(event_id=failed.pk).exists()


@pytest.mark.parametrize("args", [[], ["--ids"], ["--ids", "x"], ["--all-failed", "--ids", "1"]])
@pytest.mark.django_db
def test_bad_arguments_are_a_command_error(args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("outbox_resend", *args)
