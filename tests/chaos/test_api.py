"""The chaos run's closing step as finance and operations do it through the API (a live server, real database)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from pytest_django.fixtures import Settings

from apps.consumers.ledger import Failure, deadletter_record
from apps.consumers.models import DeadLetter
from apps.invoicing.handlers import MissingBillingData
from apps.invoicing.models import BillingAccount, Invoice, KnownCustomer
from apps.routing.models import Customer
from chaos.api import Fleet, settle
from tests.consumers.support import raw_message
from tests.factories import route_calculated

# serialized_rollback: the role groups the migrations made (and create_demo_users joins) are back after another
# transactional test flushed them.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_settle_opens_the_missing_account_and_replays_the_routes_dead_letter_so_it_is_invoiced(
    live_server: Any, settings: Settings,
) -> None:
    settings.DEBUG = True
    call_command("create_demo_users")
    customer = Customer.objects.create(name="Late Payer")
    KnownCustomer.objects.create(customer_id=customer.pk, name=customer.name, revision=1,
                                 changed_at=customer.changed_at)
    event = route_calculated(route_id=41, customer_id=customer.pk, customer_name=customer.name)
    error = MissingBillingData(customer_id=customer.pk, customer_name=customer.name, route_id=41)
    head = deadletter_record(group="invoicing", raw=raw_message(event), failure=Failure.from_exception(error),
                             attempts=1)
    fleet = Fleet(depots=[], trucks=[], customers=[customer.pk], without_account=[customer.pk])

    outcomes = settle(live_server.url, fleet)

    assert outcomes == {"open_account:201": 1, "replay:200:applied": 1}
    assert fleet.without_account == []
    assert BillingAccount.objects.filter(customer_id=customer.pk).exists()
    assert DeadLetter.objects.get(pk=head.pk).status == DeadLetter.Status.REPLAYED
    assert Invoice.objects.filter(route_id=41).count() == 1
    assert settle(live_server.url, fleet) == {}  # nothing left: the run stops settling
