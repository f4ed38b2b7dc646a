"""The admin index tells each role what waits for them, and only from what they may see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.test import Client
from django.utils import timezone

from apps import outbox
from apps.invoicing.models import Invoice
from apps.outbox.models import OutboxEvent
from tests.consumers.factories import dead_letter
from tests.factories import route_calculated
from tests.invoicing.factories import issued_invoice, three_stop_route

pytestmark = pytest.mark.django_db(serialized_rollback=True)


def index_for(role: str) -> str:
    user = User.objects.create_user(f"{role}-index", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client.get("/admin/").content.decode()


@pytest.fixture
def waiting_work() -> None:
    dead_letter(1, scenario="")
    dead_letter(2, scenario="")
    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
    invoice = issued_invoice(three_stop_route(route_id=1))
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(minutes=7))
    Invoice.objects.filter(pk=invoice.pk).update(pdf_status=Invoice.PdfStatus.FAILED)


@pytest.mark.usefixtures("waiting_work")
def test_operations_sees_pending_dead_letters_by_group_the_whole_outbox_backlog_and_nothing_of_invoices() -> None:
    page = index_for("operations")
    assert "2 unresolved dead letters in group testing" in page
    # Operations re-sends failed outbox rows of every context, so it sees every context's backlog.
    assert "2 unpublished events, the oldest 0:07:" in page
    assert "failed PDF" not in page


@pytest.mark.usefixtures("waiting_work")
def test_finance_sees_failed_pdfs_and_the_dead_letters_it_may_view() -> None:
    page = index_for("finance")
    assert "1 invoice with a failed PDF" in page and "?pdf_status__exact=failed" in page
    assert "2 unresolved dead letters in group testing" in page
    assert "unpublished event" not in page


@pytest.mark.usefixtures("waiting_work")
def test_dispatcher_sees_the_outbox_backlog_age_and_nothing_of_the_ledger_or_invoices() -> None:
    page = index_for("dispatcher")
    # Routing's RouteCalculated only: invoicing's InvoiceGenerated is not a dispatcher's to see.
    assert "1 unpublished event, the oldest 0:07:" in page
    assert "dead letter" not in page and "failed PDF" not in page
