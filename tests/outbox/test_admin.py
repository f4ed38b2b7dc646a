"""The outbox admin: read-only, searchable by event id or key, shows the backlog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps import outbox
from apps.outbox.models import OutboxEvent
from tests.factories import route_calculated


@pytest.fixture
def admin_client_(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.mark.django_db
def test_changelist_shows_unpublished_count_and_age_of_the_oldest(admin_client_: Client) -> None:
    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
        outbox.publish(route_calculated(truck_id=2))
    OutboxEvent.objects.filter(key="1").update(created_at=timezone.now() - timedelta(minutes=5))

    response = admin_client_.get(reverse("admin:outbox_outboxevent_changelist"))

    assert response.status_code == 200
    assert response.context["backlog"].unpublished == 2
    assert timedelta(minutes=5) <= response.context["backlog"].oldest_age < timedelta(minutes=6)
    assert "Unpublished events: <strong>2</strong>" in response.content.decode()


@pytest.mark.django_db
def test_outbox_admin_is_read_only(admin_client_: Client) -> None:
    with transaction.atomic():
        outbox.publish(route_calculated())
    row = OutboxEvent.objects.get()

    assert admin_client_.get(reverse("admin:outbox_outboxevent_add")).status_code == 403
    assert admin_client_.post(reverse("admin:outbox_outboxevent_change", args=[row.pk]), {}).status_code == 403
    assert admin_client_.post(reverse("admin:outbox_outboxevent_delete", args=[row.pk])).status_code == 403
    detail = admin_client_.get(reverse("admin:outbox_outboxevent_change", args=[row.pk]))
    assert detail.status_code == 200
    assert str(row.event_id) in detail.content.decode()
    assert OutboxEvent.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_search_finds_an_event_by_its_id_or_its_key(admin_client_: Client) -> None:
    with transaction.atomic():
        wanted = outbox.publish(route_calculated(truck_id=11))
        outbox.publish(route_calculated(truck_id=12))
    url = reverse("admin:outbox_outboxevent_changelist")

    by_id = admin_client_.get(url, {"q": str(wanted)}).context["cl"].result_list
    by_key = admin_client_.get(url, {"q": "12"}).context["cl"].result_list

    assert [row.event_id for row in by_id] == [wanted]
    assert [row.key for row in by_key] == ["12"]


@pytest.mark.django_db
def test_a_dispatcher_sees_routing_events_but_not_invoicing_ones() -> None:
    from django.contrib.auth.models import Group

    from tests.factories import invoice_generated

    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
        outbox.publish(invoice_generated(gross_total="999.99", net_total="840.33", vat_total="159.66"))
    routing_row, invoice_row = OutboxEvent.objects.order_by("id")
    dispatcher = User.objects.create_user("dispatcher", password="pw", is_staff=True)
    dispatcher.groups.add(Group.objects.get(name="dispatcher"))
    browser = Client()
    browser.force_login(dispatcher)
    page = browser.get(reverse("admin:outbox_outboxevent_changelist")).content.decode()
    assert "RouteCalculated" in page and "InvoiceGenerated" not in page
    detail = browser.get(reverse("admin:outbox_outboxevent_change", args=[invoice_row.pk]))
    assert detail.status_code == 302 and b"999.99" not in detail.content  # "does not exist" redirect
    assert browser.get(reverse("admin:outbox_outboxevent_change", args=[routing_row.pk])).status_code == 200

