"""Invoice numbers: unique and gapless per year, even with several writers issuing at the same time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from apps.invoicing.models import Invoice
from apps.invoicing.services import RouteToInvoice, invoice_issue_for_route, invoice_issue_for_routes
from tests.invoicing.factories import BillingAccountFactory, three_stop_route

WRITERS = 6
INVOICES_PER_WRITER = 8


def issue_from_parallel_connections(issue: Callable[[int], list[str]]) -> list[str]:
    """Run `issue(writer)` for every writer at once, each thread on its own database connection: real
    concurrent transactions on the counter row. Returns every number issued."""
    for customer_id in range(1, WRITERS + 1):
        BillingAccountFactory(customer_id=customer_id)
    start = threading.Barrier(WRITERS)

    def run(writer: int) -> list[str]:
        try:
            start.wait()
            return issue(writer)
        finally:
            connection.close()

    with ThreadPoolExecutor(WRITERS) as pool:
        return [number for numbers in pool.map(run, range(1, WRITERS + 1)) for number in numbers]


def assert_gapless(issued: list[str]) -> None:
    total = WRITERS * INVOICES_PER_WRITER
    assert len(set(issued)) == total
    assert sorted(int(number[-6:]) for number in issued) == list(range(1, total + 1))
    assert Invoice.objects.count() == total


@pytest.mark.django_db(transaction=True)
def test_parallel_connections_issue_consecutive_numbers_without_duplicates() -> None:
    def issue(writer: int) -> list[str]:
        return [
            invoice_issue_for_route(
                route=three_stop_route(route_id=writer * 1000 + i, customer_id=writer, truck_id=writer)
            ).number
            for i in range(INVOICES_PER_WRITER)
        ]

    assert_gapless(issue_from_parallel_connections(issue))


@pytest.mark.django_db(transaction=True)
def test_parallel_batches_and_single_issues_share_one_gapless_sequence() -> None:
    def issue(writer: int) -> list[str]:
        numbers: list[str] = []
        for batch in range(INVOICES_PER_WRITER // 4):
            routes = [
                three_stop_route(route_id=writer * 1000 + batch * 4 + i, customer_id=writer, truck_id=writer)
                for i in range(4)
            ]
            if writer % 2:  # odd writers issue whole batches, even ones route by route
                numbers += [i.number for i in invoice_issue_for_routes(routes=[RouteToInvoice(r) for r in routes])]
            else:
                numbers += [invoice_issue_for_route(route=route).number for route in routes]
        return numbers

    assert_gapless(issue_from_parallel_connections(issue))


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_issue_leaves_no_gap() -> None:
    BillingAccountFactory()
    first = invoice_issue_for_route(route=three_stop_route(route_id=1))
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice_issue_for_route(route=three_stop_route(route_id=2))
        raise RuntimeError("rolled back after the number was taken")
    second = invoice_issue_for_route(route=three_stop_route(route_id=3))

    assert [first.number[-6:], second.number[-6:]] == ["000001", "000002"]


@pytest.mark.django_db
def test_numbers_carry_the_year_of_issue() -> None:
    BillingAccountFactory()
    invoice = invoice_issue_for_route(route=three_stop_route(route_id=1))
    assert invoice.number == f"LF-{invoice.issued_at.year:04d}-000001"
