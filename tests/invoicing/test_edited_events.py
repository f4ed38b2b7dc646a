"""Four eyes on what is billed: an edit of a dead letter's billing or identity fields waits for a second person
with finance's permission; the invoice it yields names the edit (and its approval)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from rest_framework.test import APIClient

from apps.common.errors import ApplicationError
from apps.consumers.models import DeadLetter, DeadLetterEdit
from apps.consumers.replay import deadletter_edit_and_replay, deadletter_edit_approve, deadletter_edit_reject
from apps.invoicing.models import Invoice
from tests.invoicing.factories import BillingAccountFactory, UserFactory, unbilled_route_dead_letter

pytestmark = pytest.mark.django_db

OPERATIONS = ["consumers.view_deadletter", "consumers.replay_deadletter", "consumers.edit_deadletter"]


def operator(**kwargs: Any) -> User:
    return UserFactory(role="operations", role__permissions=OPERATIONS, **kwargs)


def edited(letter: DeadLetter, **changes: Any) -> str:
    payload = json.loads(bytes(letter.value))
    payload.update(changes)
    return json.dumps(payload)


@pytest.fixture
def letter() -> DeadLetter:
    """A RouteCalculated dead letter whose missing billing account finance has since added: a replay would
    issue its invoice now."""
    route, dead_letter = unbilled_route_dead_letter(customer_name="Ege Foods")
    BillingAccountFactory(customer_id=route.customer_id, name="Ege Foods")
    return dead_letter


@pytest.mark.parametrize("changes", [
    {"distance_km": "9999.000"},
    {"route_id": 424242},
    {"calculation": 99},
    {"customer_id": 7777},
    {"truck_id": 4242},
    {"stops": []},  # replaced below by a longer list: the stop count is billed
])
def test_an_edit_of_a_billed_or_identity_field_waits_for_approval_and_invoices_nothing(
    letter: DeadLetter, changes: dict[str, Any]
) -> None:
    if "stops" in changes:
        stops = json.loads(bytes(letter.value))["stops"]
        changes = {"stops": stops + [{**stops[-1], "sequence": len(stops) + 1}]}
    received = bytes(letter.value)

    result = deadletter_edit_and_replay(dead_letter_id=letter.pk, actor=operator(), payload=edited(letter, **changes))

    assert result.outcome == "awaiting_approval"
    assert not Invoice.objects.exists()
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.PENDING
    assert bytes(letter.value) == received, "the edit was applied before anyone approved it"
    edit = DeadLetterEdit.objects.get(dead_letter=letter)
    assert edit.status == DeadLetterEdit.Status.PENDING
    assert set(edit.guarded_fields) == set(changes)


def test_finance_approves_a_colleagues_edit_and_the_invoice_links_the_approval(letter: DeadLetter) -> None:
    proposer = operator()
    deadletter_edit_and_replay(dead_letter_id=letter.pk, actor=proposer, payload=edited(letter, distance_km="500.000"))
    edit = DeadLetterEdit.objects.get(dead_letter=letter)
    approver = UserFactory(role="finance")

    result = deadletter_edit_approve(edit_id=edit.pk, actor=approver)

    assert result.outcome == "applied"
    edit.refresh_from_db()
    assert (edit.status, edit.proposed_by, edit.approved_by) == (DeadLetterEdit.Status.APPLIED, proposer, approver)
    assert edit.proposed_at <= edit.approved_at
    invoice = Invoice.objects.get()
    assert invoice.source_edit == edit
    assert invoice.route_summary["distance_km"] == "500.000"
    history = letter.history.get(action="edit_and_replay")
    assert (history.actor, history.outcome) == (approver, "applied")
    assert '"distance_km": "500.000"' in history.payload_diff


def test_nobody_approves_their_own_billing_edit_and_operations_cannot_approve(letter: DeadLetter) -> None:
    both = UserFactory(role="finance")  # finance's approval and operations' edit in one person
    for codename in ("view_deadletter", "edit_deadletter"):
        both.user_permissions.add(Permission.objects.get(content_type__app_label="consumers", codename=codename))
    both = User.objects.get(pk=both.pk)  # drop the permission cache
    deadletter_edit_and_replay(dead_letter_id=letter.pk, actor=both, payload=edited(letter, calculation=5))
    edit = DeadLetterEdit.objects.get(dead_letter=letter)

    with pytest.raises(ApplicationError, match="second person"):
        deadletter_edit_approve(edit_id=edit.pk, actor=both)
    with pytest.raises(ApplicationError, match="permission"):
        deadletter_edit_approve(edit_id=edit.pk, actor=operator())

    assert not Invoice.objects.exists()
    assert DeadLetterEdit.objects.get(pk=edit.pk).status == DeadLetterEdit.Status.PENDING


def test_a_rejected_edit_is_never_applied(letter: DeadLetter) -> None:
    deadletter_edit_and_replay(dead_letter_id=letter.pk, actor=operator(), payload=edited(letter, calculation=5))
    edit = DeadLetterEdit.objects.get(dead_letter=letter)

    deadletter_edit_reject(edit_id=edit.pk, actor=UserFactory(role="finance"), reason="calculation 5 does not exist")

    edit.refresh_from_db()
    assert edit.status == DeadLetterEdit.Status.REJECTED
    with pytest.raises(ApplicationError):
        deadletter_edit_approve(edit_id=edit.pk, actor=UserFactory(role="finance"))
    assert not Invoice.objects.exists()


def test_an_edit_of_descriptive_fields_replays_at_once_and_the_invoice_still_names_it(letter: DeadLetter) -> None:
    result = deadletter_edit_and_replay(
        dead_letter_id=letter.pk, actor=operator(), payload=edited(letter, customer_name="Ege Foods Ltd")
    )

    assert result.outcome == "applied"
    edit = DeadLetterEdit.objects.get(dead_letter=letter)
    assert (edit.status, edit.guarded_fields, edit.approved_by) == (DeadLetterEdit.Status.APPLIED, [], None)
    assert Invoice.objects.get().source_edit == edit


def test_a_replay_of_the_received_message_issues_an_invoice_with_no_edit(letter: DeadLetter) -> None:
    from apps.consumers.replay import deadletter_replay

    assert deadletter_replay(dead_letter_id=letter.pk, actor=operator()).outcome == "applied"
    assert Invoice.objects.get().source_edit is None


# --- the same through the API and the admin -------------------------------------------------------------------


def api(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_proposes_a_billing_edit_and_finance_approves_it(letter: DeadLetter) -> None:
    proposer = operator()
    payload = json.loads(edited(letter, distance_km="500.000"))

    proposed = api(proposer).post(f"/api/v1/dead-letters/{letter.pk}/edit/", {"payload": payload}, format="json")

    assert proposed.status_code == 200, proposed.content
    assert proposed.json()["outcome"] == "awaiting_approval"
    edit_id = proposed.json()["edit_id"]
    finance = api(UserFactory(role="finance"))
    pending = finance.get("/api/v1/dead-letter-edits/", {"status": "pending"}).json()["results"]
    assert [(row["id"], row["guarded_fields"], row["proposed_by"]) for row in pending] == [
        (edit_id, ["distance_km"], proposer.username)
    ]
    assert api(proposer).post(f"/api/v1/dead-letter-edits/{edit_id}/approve/").status_code == 403
    approved = finance.post(f"/api/v1/dead-letter-edits/{edit_id}/approve/")
    assert approved.status_code == 200, approved.content
    assert approved.json()["outcome"] == "applied"
    invoice = finance.get(f"/api/v1/invoices/{Invoice.objects.get().pk}/").json()
    assert invoice["source_edit"] == edit_id
    assert Decimal(invoice["net_total"]) > 0


def test_the_admin_holds_a_billing_edit_until_finance_approves_it(letter: DeadLetter, client: Any) -> None:
    client.force_login(operator())
    url = reverse("admin:consumers_deadletter_edit_and_replay", args=[letter.pk])
    response = client.post(url, {"payload": edited(letter, distance_km="500.000")}, follow=True)
    assert "awaiting approval" in response.content.decode()
    edit = DeadLetterEdit.objects.get(dead_letter=letter)

    client.force_login(UserFactory(role="finance"))
    changelist = reverse("admin:consumers_deadletteredit_changelist")
    assert str(edit.pk) in client.get(changelist).content.decode()
    client.post(changelist, {"action": "approve_selected", "_selected_action": [edit.pk]})

    assert DeadLetterEdit.objects.get(pk=edit.pk).status == DeadLetterEdit.Status.APPLIED
    assert Invoice.objects.get().source_edit == edit
    invoice_page = client.get(reverse("admin:invoicing_invoice_change", args=[Invoice.objects.get().pk]))
    assert "approval by" in invoice_page.content.decode()
