"""The fix a dead letter asks of finance (a missing billing account), as operations and finance see it on the dead
letter's page: whose it is, whether it is done already, and then "replay now"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.invoicing.models import BillingAccount
from tests.consumers.factories import role_user
from tests.invoicing.factories import BillingAccountFactory, unbilled_route_dead_letter

pytestmark = pytest.mark.django_db(serialized_rollback=True)  # the role groups of the data migrations


def _page(role: str, dead_letter_id: int) -> str:
    client = Client()
    client.force_login(role_user(role))
    return client.get(reverse("admin:consumers_deadletter_change", args=[dead_letter_id])).content.decode()


def test_operations_see_the_fix_is_finances_and_not_done_yet_instead_of_a_link_to_a_refusal() -> None:
    _route, letter = unbilled_route_dead_letter(customer_name="Ege Foods")

    page = _page("operations", letter.pk)

    assert "Add billing account for Ege Foods" in page
    assert "for finance (Can add billing account)" in page
    assert "Not done yet" in page
    assert f'href="{letter.fix_url}"' not in page.replace("&amp;", "&")  # it would answer 403


def test_once_finance_added_the_account_operations_read_since_when_and_replay_now(settings: SettingsWrapper) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    route, letter = unbilled_route_dead_letter(customer_name="Ege Foods")
    BillingAccountFactory(customer_id=route.customer_id, name="Ege Foods A.S.")
    BillingAccount.objects.filter(pk=route.customer_id).update(created_at=datetime(2026, 12, 6, 9, 42, tzinfo=UTC))

    page = _page("operations", letter.pk)

    assert "Done: the billing account for Ege Foods A.S. exists since 2026-12-06 10:42 CET" in page
    replay = reverse("admin:consumers_deadletter_replay_one", args=[letter.pk])
    assert f'<a href="{replay}">replay now</a>' in page


def test_finance_who_can_do_the_fix_gets_the_link() -> None:
    _route, letter = unbilled_route_dead_letter(customer_name="Ege Foods")

    page = _page("finance", letter.pk).replace("&amp;", "&")

    assert f'<a href="{letter.fix_url}">Add billing account for Ege Foods</a>' in page
    assert "Not done yet" in page
