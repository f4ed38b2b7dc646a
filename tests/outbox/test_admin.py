"""The outbox admin: read-only, searchable by event id or key, shows the backlog, failed rows first; operations
re-sends failed rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps import outbox
from apps.outbox.models import OutboxEvent, PendingEvent
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
    OutboxEvent.objects.filter(key="truck:1").update(created_at=timezone.now() - timedelta(minutes=5))

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
    by_key = admin_client_.get(url, {"q": "truck:12"}).context["cl"].result_list

    assert [row.event_id for row in by_id] == [wanted]
    assert [row.key for row in by_key] == ["truck:12"]


def _failed(row: OutboxEvent, error: str = "Broker: Message size too large") -> None:
    """As the relay leaves a row refused for good: failed, with its error, out of the queue."""
    OutboxEvent.objects.filter(pk=row.pk).update(state=OutboxEvent.State.FAILED, last_error=error, attempts=1)
    PendingEvent.objects.filter(event=row).delete()


def _staff_in(group: str) -> Client:
    user = User.objects.create_user(group, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_failed_rows_are_listed_first(admin_client_: Client) -> None:
    with transaction.atomic():
        for truck in range(1, 5):
            outbox.publish(route_calculated(truck_id=truck))
    rows = list(OutboxEvent.objects.order_by("id"))
    _failed(rows[1])

    listed = admin_client_.get(reverse("admin:outbox_outboxevent_changelist")).context["cl"].result_list

    assert [row.pk for row in listed] == [rows[1].pk, rows[3].pk, rows[2].pk, rows[0].pk]


@pytest.mark.django_db
def test_operations_resends_failed_events_and_the_row_records_who_and_when() -> None:
    with transaction.atomic():
        failed_id = outbox.publish(route_calculated(truck_id=1))
        pending_id = outbox.publish(route_calculated(truck_id=2))
    failed, pending = OutboxEvent.objects.get(event_id=failed_id), OutboxEvent.objects.get(event_id=pending_id)
    _failed(failed)
    operations = _staff_in("operations")

    response = operations.post(
        reverse("admin:outbox_outboxevent_changelist"),
        {"action": "resend_selected", "_selected_action": [failed.pk, pending.pk]},
        follow=True,
    )

    assert response.status_code == 200
    failed.refresh_from_db()
    assert failed.state == OutboxEvent.State.PENDING
    assert failed.resent_by == "operations"
    assert timezone.now() - failed.resent_at < timedelta(minutes=1)
    assert failed.last_error  # the reason it failed stays visible until the next attempt
    assert PendingEvent.objects.filter(event=failed, topic="routing.events", key="truck:1").exists()
    assert OutboxEvent.objects.get(pk=pending.pk).resent_at is None  # not failed: left alone
    assert LogEntry.objects.filter(object_id=str(failed.pk), change_message__contains="Re-sent").exists()
    messages = [str(m) for m in response.context["messages"]]
    assert "Re-sent 1 failed events" in messages[0] and "were not failed" in messages[1]


@pytest.mark.django_db
def test_resend_needs_its_own_permission() -> None:
    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
    row = OutboxEvent.objects.get()
    _failed(row)
    dispatcher = _staff_in("dispatcher")  # may view the outbox, not re-send

    listing = dispatcher.get(reverse("admin:outbox_outboxevent_changelist"))
    dispatcher.post(
        reverse("admin:outbox_outboxevent_changelist"), {"action": "resend_selected", "_selected_action": [row.pk]}
    )

    assert listing.status_code == 200
    action_form = listing.context["action_form"]  # None: no action this user may run
    assert action_form is None or "resend_selected" not in dict(action_form.fields["action"].choices)
    row.refresh_from_db()
    assert (row.state, row.resent_at) == (OutboxEvent.State.FAILED, None)
    assert Group.objects.get(name="operations").permissions.filter(codename="resend_outboxevent").exists()


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



@pytest.mark.django_db
def test_event_page_is_a_view_with_the_payload_indented_and_no_save(admin_client_: Client) -> None:
    from django.contrib.admin.models import LogEntry

    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
    event = OutboxEvent.objects.get()
    url = reverse("admin:outbox_outboxevent_change", args=[event.pk])
    html = admin_client_.get(url).content.decode()
    assert "View outbox event" in html and "Change outbox event" not in html and 'name="_save"' not in html
    assert '<pre class="payload">{\n  &quot;route_id&quot;' in html
    assert admin_client_.post(url, {}).status_code == 403
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_operations_sees_every_context_s_events_to_re_send_them() -> None:
    from tests.factories import invoice_generated

    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
        outbox.publish(invoice_generated())
    listed = _staff_in("operations").get(reverse("admin:outbox_outboxevent_changelist")).context["cl"].result_list

    assert {row.topic for row in listed} == {"routing.events", "invoicing.events"}
