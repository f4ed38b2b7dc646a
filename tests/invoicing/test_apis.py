"""The finance API: invoices with filters and their PDF, billing accounts; only the finance role gets in."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.invoicing.models import BillingAccount, Invoice
from apps.invoicing.services.delivery import invoice_mark_sent
from apps.invoicing.services.pdfs import invoice_render_pdf
from tests.invoicing.factories import (
    BillingAccountFactory,
    KnownCustomerFactory,
    UserFactory,
    issued_invoice,
    three_stop_route,
)

pytestmark = pytest.mark.django_db

ACCOUNT = {
    "customer_id": 55, "name": "Karadeniz Steel", "billing_address": "Liman Cad. 3\nTrabzon", "vat_id": "TR555",
    "currency": "EUR", "rate_per_km": "1.1000", "fee_per_stop": "12.50", "minimum_charge": "100.00",
    "fuel_surcharge_percent": "5.00", "vat_rate_percent": "20.00",
}


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def finance() -> APIClient:
    return client_for(UserFactory(role="finance"))


@pytest.fixture
def dispatcher() -> APIClient:
    return client_for(UserFactory(role="dispatcher"))


@pytest.mark.parametrize(
    ("method", "url"),
    [("get", "/api/v1/invoices/"), ("get", "/api/v1/invoices/1/"), ("get", "/api/v1/invoices/1/pdf/"),
     ("get", "/api/v1/billing-accounts/"), ("post", "/api/v1/billing-accounts/"),
     ("patch", "/api/v1/billing-accounts/3/")],
)
def test_a_dispatcher_is_refused_every_invoicing_endpoint(dispatcher: APIClient, method: str, url: str) -> None:
    issued_invoice(three_stop_route(route_id=1))
    response = getattr(dispatcher, method)(url, ACCOUNT, format="json") if method != "get" else dispatcher.get(url)
    assert response.status_code == 403


def test_an_anonymous_client_is_refused() -> None:
    assert APIClient().get("/api/v1/invoices/").status_code in (401, 403)


def test_finance_lists_invoices_filtered_by_route_customer_status_and_date(finance: APIClient) -> None:
    first = issued_invoice(three_stop_route(route_id=1))
    issued_invoice(three_stop_route(route_id=2))
    issued_invoice(three_stop_route(route_id=3, customer_id=9))
    invoice_mark_sent(invoice_id=first.pk)
    today = first.issued_at.date().isoformat()

    def numbers(query: str) -> list[str]:
        response = finance.get(f"/api/v1/invoices/{query}")
        assert response.status_code == 200, response.json()
        return sorted(row["number"] for row in response.json()["results"])

    assert len(numbers("")) == 3
    assert numbers("?route=1") == [first.number]
    assert len(numbers("?customer=9")) == 1
    assert numbers("?status=sent") == [first.number]
    assert len(numbers(f"?date={today}")) == 3
    assert numbers("?date=2001-01-01") == []


def test_the_invoice_list_is_paginated(finance: APIClient) -> None:
    issued_invoice(three_stop_route(route_id=1))
    body = finance.get("/api/v1/invoices/").json()
    assert {"count", "next", "previous", "results"} <= set(body)
    assert body["count"] == 1


def test_a_bad_filter_value_is_a_400_with_the_field(finance: APIClient) -> None:
    response = finance.get("/api/v1/invoices/?date=yesterday")
    assert response.status_code == 400
    assert "date" in response.json()


def test_finance_reads_an_invoice_with_its_lines(finance: APIClient) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    body = finance.get(f"/api/v1/invoices/{invoice.pk}/").json()
    assert (body["number"], body["gross_total"], body["pdf_status"]) == (invoice.number, "722.95", "pending")
    assert [line["kind"] for line in body["lines"]] == ["distance", "stops", "fuel", "vat"]


def test_an_unknown_invoice_is_a_404(finance: APIClient) -> None:
    assert finance.get("/api/v1/invoices/999/").status_code == 404


def test_the_pdf_is_a_404_with_a_clear_message_until_it_is_rendered(finance: APIClient) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))

    before = finance.get(f"/api/v1/invoices/{invoice.pk}/pdf/", HTTP_ACCEPT="application/pdf")
    assert before.status_code == 404
    assert before.json() == {"detail": f"the PDF of {invoice.number} is not rendered yet; try again in a moment"}

    invoice_render_pdf(invoice_id=invoice.pk)
    after = finance.get(f"/api/v1/invoices/{invoice.pk}/pdf/")
    assert after.status_code == 200
    assert after["Content-Type"] == "application/pdf"
    assert b"".join(after.streaming_content).startswith(b"%PDF-")


def test_a_failed_pdf_says_it_can_be_re_rendered(finance: APIClient) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    Invoice.objects.filter(pk=invoice.pk).update(pdf_status=Invoice.PdfStatus.FAILED)
    response = finance.get(f"/api/v1/invoices/{invoice.pk}/pdf/")
    assert response.status_code == 404
    assert "re-render it from the admin" in response.json()["detail"]


def test_finance_creates_reads_and_updates_a_billing_account(finance: APIClient) -> None:
    KnownCustomerFactory(customer_id=55, name="Karadeniz Steel")
    created = finance.post("/api/v1/billing-accounts/", ACCOUNT, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["rate_per_km"] == "1.1000"

    updated = finance.patch("/api/v1/billing-accounts/55/", {"fee_per_stop": "14.00"}, format="json")
    assert updated.status_code == 200
    assert BillingAccount.objects.get(customer_id=55).fee_per_stop == Decimal("14.00")
    assert finance.get("/api/v1/billing-accounts/55/").json()["name"] == "Karadeniz Steel"
    assert finance.get("/api/v1/billing-accounts/").json()["count"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [({"rate_per_km": "-1"}, "rate_per_km"), ({"currency": "euro"}, "currency"),
     ({"vat_rate_percent": "120"}, "vat_rate_percent"), ({"customer_id": 0}, "customer_id")],
)
def test_invalid_billing_data_is_a_400_naming_the_field_and_writes_nothing(
    finance: APIClient, change: dict, field: str
) -> None:
    response = finance.post("/api/v1/billing-accounts/", ACCOUNT | change, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not BillingAccount.objects.exists()


def test_an_account_for_a_customer_not_in_the_directory_is_a_400_naming_customer_id(finance: APIClient) -> None:
    KnownCustomerFactory(customer_id=56)
    response = finance.post("/api/v1/billing-accounts/", ACCOUNT, format="json")
    assert response.status_code == 400
    assert response.json()["customer_id"][0].endswith("object does not exist.")
    assert not BillingAccount.objects.exists()


def test_a_second_account_for_the_same_customer_is_a_409_conflict(finance: APIClient) -> None:
    KnownCustomerFactory(customer_id=55)
    BillingAccountFactory(customer_id=55)
    response = finance.post("/api/v1/billing-accounts/", ACCOUNT, format="json")
    assert response.status_code == 409
    assert "customer_id" in response.json()


def test_patching_an_unknown_account_is_a_404(finance: APIClient) -> None:
    assert finance.patch("/api/v1/billing-accounts/77/", {"name": "x"}, format="json").status_code == 404


def test_the_schema_documents_the_invoicing_endpoints(finance: APIClient) -> None:
    schema = finance.get("/api/schema/?format=json").json()
    assert {"/api/v1/invoices/", "/api/v1/invoices/{invoice_id}/pdf/", "/api/v1/billing-accounts/{customer_id}/"} <= set(
        schema["paths"]
    )
    assert "application/pdf" in schema["paths"]["/api/v1/invoices/{invoice_id}/pdf/"]["get"]["responses"]["200"]["content"]
