"""Finance's admin: invoices are read-only, searchable and filterable; the actions call the services; billing
accounts are opened for a customer picked from the directory with the admin's autocomplete."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import strip_tags

from apps.invoicing.models import BillingAccount, Invoice
from apps.invoicing.services.customers import known_customer_upsert
from apps.invoicing.services.pdfs import invoice_pdf_render_failed
from tests.invoicing.factories import (
    FINANCE_PERMISSIONS,
    BillingAccountFactory,
    KnownCustomerFactory,
    UserFactory,
    issued_invoice,
    three_stop_route,
    unbilled_route_dead_letter,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/invoicing/invoice/"


@pytest.fixture
def finance_admin() -> Client:
    client = Client()
    # As the role's migrations grant it: invoicing's permissions and a read-only look at the dead-letter ledger.
    ledger = "consumers.view_deadletter"
    client.force_login(UserFactory(role="finance", role__permissions=[*FINANCE_PERMISSIONS, ledger]))
    return client


def test_finance_finds_an_invoice_by_number_and_by_month_and_status_filters(finance_admin: Client) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    issued_invoice(three_stop_route(route_id=2))
    month = invoice.issued_at.strftime("%Y-%m")

    found = finance_admin.get(CHANGELIST, {"q": invoice.number})
    assert found.status_code == 200
    assert list(found.context["cl"].result_list) == [invoice]
    by_month = finance_admin.get(CHANGELIST, {"month": month, "status__exact": "issued"})
    assert by_month.context["cl"].result_count == 2
    assert finance_admin.get(CHANGELIST, {"month": "2001-01"}).context["cl"].result_count == 0


@pytest.mark.parametrize("month", ["x", "2026", "2026-13", "2026-00", "99999999999999999999-01", "2026-1-1", "-"])
def test_a_month_that_is_no_month_is_ignored_with_a_message_not_a_500(finance_admin: Client, month: str) -> None:
    issued_invoice(three_stop_route(route_id=1))
    response = finance_admin.get(CHANGELIST, {"month": month})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1  # the filter is ignored, not an empty list
    assert any("YYYY-MM" in str(message) for message in response.context["messages"])


def test_the_invoice_page_shows_its_lines_and_cannot_be_edited_added_or_deleted(finance_admin: Client) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    page = finance_admin.get(f"{CHANGELIST}{invoice.pk}/change/")
    assert page.status_code == 200
    assert b"Delivery stops" in page.content and b"722.95" in page.content
    assert not page.context["adminform"].form.fields  # every field is read-only
    assert finance_admin.get(f"{CHANGELIST}add/").status_code == 403
    assert finance_admin.get(f"{CHANGELIST}{invoice.pk}/delete/").status_code == 403


def test_re_render_action_queues_a_new_pdf_version_for_a_failed_invoice(finance_admin: Client) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    invoice_pdf_render_failed(invoice_id=invoice.pk, error="OSError: disk full", final=True)

    response = finance_admin.post(CHANGELIST, {"action": "rerender_pdf", "_selected_action": [invoice.pk]}, follow=True)

    invoice.refresh_from_db()
    assert (invoice.pdf_status, invoice.pdf_version, invoice.pdf_last_error) == ("pending", 2, "")
    assert "Re-rendering the PDF of 1 invoice(s)." in [str(m) for m in response.context["messages"]]


def test_mark_as_sent_action_marks_issued_invoices_and_reports_refusals(finance_admin: Client) -> None:
    original = issued_invoice(three_stop_route(route_id=1, calculation=1))
    replacement = issued_invoice(three_stop_route(route_id=1, calculation=2, distance_km=Decimal("500.000")))

    response = finance_admin.post(
        CHANGELIST, {"action": "mark_sent", "_selected_action": [original.pk, replacement.pk]}, follow=True
    )

    assert Invoice.objects.get(pk=replacement.pk).status == Invoice.Status.SENT
    assert Invoice.objects.get(pk=original.pk).status == Invoice.Status.CREDITED
    messages = [str(m) for m in response.context["messages"]]
    assert "Marked 1 invoice(s) as sent." in messages
    assert f"{original.number} is credited; it cannot be sent" in messages


ACCOUNT_ADD = "/admin/invoicing/billingaccount/add/"
AUTOCOMPLETE = "/admin/autocomplete/"
ACCOUNT_CUSTOMER = {"app_label": "invoicing", "model_name": "billingaccount", "field_name": "customer"}
TARIFF = {
    "name": "Ege Foods", "billing_address": "Izmir", "currency": "EUR", "rate_per_km": "1.0", "fee_per_stop": "10",
    "minimum_charge": "0", "fuel_surcharge_percent": "0", "vat_rate_percent": "20", "payment_terms_days": "30",
}


def _found(client: Client, term: str, page: int = 1) -> tuple[list[dict[str, str]], bool]:
    response = client.get(AUTOCOMPLETE, {**ACCOUNT_CUSTOMER, "term": term, "page": page})
    assert response.status_code == 200, response.status_code
    body = response.json()
    return body["results"], body["pagination"]["more"]


def test_finance_adds_a_billing_account_for_a_customer_picked_from_the_directory(finance_admin: Client) -> None:
    KnownCustomerFactory(customer_id=61, name="Ege Foods")
    response = finance_admin.post(ACCOUNT_ADD, {"customer": 61, **TARIFF})
    assert response.status_code == 302, response.context["adminform"].form.errors
    account = BillingAccount.objects.get(customer_id=61)
    assert (account.name, account.customer.name) == ("Ege Foods", "Ege Foods")


def test_the_account_form_picks_the_customer_with_the_admin_autocomplete(finance_admin: Client) -> None:
    html = finance_admin.get(ACCOUNT_ADD).content.decode()
    assert 'class="admin-autocomplete' in html and 'name="customer"' in html
    assert 'data-ajax--url="/admin/autocomplete/"' in html and 'data-field-name="customer"' in html
    # Django's vendored select2, served by this site (no CDN).
    assert "/static/admin/js/vendor/select2/select2.full" in html and "/static/admin/js/autocomplete.js" in html


def test_the_autocomplete_finds_customers_without_an_account_by_name_or_id(finance_admin: Client) -> None:
    KnownCustomerFactory(customer_id=61, name="Ege Foods")
    KnownCustomerFactory(customer_id=620, name="Ege Marble")
    KnownCustomerFactory(customer_id=62, name="Marmara Glass")
    BillingAccountFactory(customer_id=620, name="Ege Marble")

    assert _found(finance_admin, "ege") == ([{"id": "61", "text": "Ege Foods (customer 61)"}], False)
    assert _found(finance_admin, "6")[0] == [{"id": "61", "text": "Ege Foods (customer 61)"},
                                             {"id": "62", "text": "Marmara Glass (customer 62)"}]
    assert _found(finance_admin, "62") == ([{"id": "62", "text": "Marmara Glass (customer 62)"}], False)
    assert _found(finance_admin, "620") == ([], False), "620 already has an account"
    # The directory's own list still shows every customer.
    assert finance_admin.get("/admin/invoicing/knowncustomer/", {"q": "ege"}).context["cl"].result_count == 2


def test_the_autocomplete_pages_twenty_customers_at_a_time(finance_admin: Client) -> None:
    for n in range(25):
        KnownCustomerFactory(customer_id=100 + n, name=f"Customer {n:02}")
    first, more = _found(finance_admin, "customer")
    assert (len(first), more, first[0]["text"]) == (20, True, "Customer 00 (customer 100)")
    second, more = _found(finance_admin, "customer", page=2)
    assert ([r["id"] for r in second], more) == (["120", "121", "122", "123", "124"], False)


def test_the_autocomplete_answers_finance_and_refuses_a_dispatcher() -> None:
    KnownCustomerFactory(customer_id=61, name="Ege Foods")
    finance, dispatcher = Client(), Client()
    finance.force_login(UserFactory(role="finance"))
    dispatcher.force_login(UserFactory(role="dispatcher", role__permissions=["routing.add_route"]))
    assert finance.get(AUTOCOMPLETE, {**ACCOUNT_CUSTOMER, "term": "ege"}).status_code == 200
    assert dispatcher.get(AUTOCOMPLETE, {**ACCOUNT_CUSTOMER, "term": "ege"}).status_code == 403
    assert dispatcher.get(ACCOUNT_ADD).status_code == 403


def test_the_account_form_refuses_a_customer_not_in_the_directory(finance_admin: Client) -> None:
    response = finance_admin.post(ACCOUNT_ADD, {"customer": 63, **TARIFF, "name": "Nobody"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["customer"] and "Select a valid choice" in errors["customer"][0]
    assert not BillingAccount.objects.exists()


def test_the_account_form_refuses_a_second_account_for_a_customer(finance_admin: Client) -> None:
    BillingAccountFactory(customer_id=62, name="Marmara Glass")
    response = finance_admin.post(ACCOUNT_ADD, {"customer": 62, **TARIFF})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["customer"]
    assert BillingAccount.objects.get().name == "Marmara Glass"


def test_a_link_naming_the_customer_preselects_it_in_the_autocomplete(finance_admin: Client) -> None:
    KnownCustomerFactory(customer_id=61, name="Ege Foods")
    for parameter in ("customer", "customer_id"):  # the form's name and the API's
        html = finance_admin.get(ACCOUNT_ADD, {parameter: 61}).content.decode()
        assert '<option value="61" selected>Ege Foods (customer 61)</option>' in html, parameter


def test_an_accounts_page_shows_its_customer_read_only_and_saves_tariff_changes(finance_admin: Client) -> None:
    account = BillingAccountFactory(customer_id=61, name="Ege Foods")
    url = f"/admin/invoicing/billingaccount/{account.pk}/change/"
    page = finance_admin.get(url)
    assert "customer" not in page.context["adminform"].form.fields
    assert '<div class="readonly"><a href="/admin/invoicing/knowncustomer/61/change/">Ege Foods (customer 61)</a>' \
        in page.content.decode()

    response = finance_admin.post(url, {**TARIFF, "fee_per_stop": "12.50"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    account.refresh_from_db()
    assert (account.customer_id, account.fee_per_stop) == (61, Decimal("12.50"))


def test_the_directory_lists_customers_by_name_and_finance_cannot_edit_it(finance_admin: Client) -> None:
    KnownCustomerFactory(customer_id=61, name="Ege Foods")
    page = finance_admin.get("/admin/invoicing/knowncustomer/", {"q": "Ege"})
    assert page.context["cl"].result_count == 1
    assert finance_admin.get("/admin/invoicing/knowncustomer/add/").status_code == 403


def test_the_invoice_page_shows_the_customers_current_name_from_the_directory(finance_admin: Client) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    known_customer_upsert(customer_id=invoice.customer_id, name="Anadolu Textiles Holding", revision=2,
                          changed_at=timezone.now())
    page = finance_admin.get(f"{CHANGELIST}{invoice.pk}/change/")
    assert "Anadolu Textiles Holding" in page.content.decode()


def test_the_invoice_page_is_a_view_without_save_buttons_and_a_post_records_no_history(
    finance_admin: Client,
) -> None:
    from django.contrib.admin.models import LogEntry

    invoice = issued_invoice(three_stop_route(route_id=1))
    page = finance_admin.get(f"{CHANGELIST}{invoice.pk}/change/")
    html = page.content.decode()
    assert "View invoice" in html and "Change invoice" not in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert finance_admin.post(f"{CHANGELIST}{invoice.pk}/change/", {}).status_code == 403
    assert not LogEntry.objects.exists(), "pressing nothing records nothing"
    # The actions still work from the list.
    choices = finance_admin.get(CHANGELIST).context["action_form"].fields["action"].choices
    assert "rerender_pdf" in {name for name, _ in choices}


def test_the_invoice_page_shows_the_route_summary_as_tables(finance_admin: Client) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    html = finance_admin.get(f"{CHANGELIST}{invoice.pk}/change/").content.decode()
    assert '<table class="route-stops">' in html
    for stop in invoice.route_summary["stops"]:
        assert f"<td>{stop['name']}</td>" in html
    assert "{&#x27;" not in html and '{"' not in html, "no raw dict or JSON dump"


def test_the_invoice_page_says_which_recalculations_issue_it_again(finance_admin: Client) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    html = finance_admin.get(f"{CHANGELIST}{invoice.pk}/change/").content.decode()
    assert "only when a recalculation changes what it bills: the distance or the stops" in html


def test_a_credited_invoice_links_to_its_credit_note_and_its_replacement(finance_admin: Client) -> None:
    original = issued_invoice(three_stop_route(route_id=1))
    replacement = issued_invoice(three_stop_route(route_id=1, calculation=2, distance_km=Decimal("500.000")))
    note = Invoice.objects.get(kind=Invoice.Kind.CREDIT_NOTE)
    html = finance_admin.get(f"{CHANGELIST}{original.pk}/change/").content.decode()
    assert f'<a href="{CHANGELIST}{note.pk}/change/">{note.number}</a>' in html
    assert f'<a href="{CHANGELIST}{replacement.pk}/change/">{replacement.number}</a>' in html
    note_page = finance_admin.get(f"{CHANGELIST}{note.pk}/change/").content.decode()
    assert f'<a href="{CHANGELIST}{original.pk}/change/">{original.number}</a>' in note_page


def test_invoice_search_finds_the_customer_by_name(finance_admin: Client) -> None:
    BillingAccountFactory(customer_id=4, name="Ege Foods")
    ege = issued_invoice(three_stop_route(route_id=1, customer_id=4, customer_name="Ege Foods"))
    issued_invoice(three_stop_route(route_id=2))
    found = finance_admin.get(CHANGELIST, {"q": "ege foo"})
    assert list(found.context["cl"].result_list) == [ege]


def test_the_invoice_page_keeps_event_ids_pdf_counters_and_errors_folded_away(finance_admin: Client) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    event_id = "0b1c2d3e-0000-4000-8000-000000000001"
    Invoice.objects.filter(pk=invoice.pk).update(source_event_id=event_id)
    invoice_pdf_render_failed(invoice_id=invoice.pk, error="Traceback (most recent call last): boom", final=True)
    html = finance_admin.get(f"{CHANGELIST}{invoice.pk}/change/").content.decode()
    shown, _, folded = html.partition("<summary>")
    assert "Technical details" in folded
    for detail in (event_id, "Traceback", "Pdf version", "Pdf rendered version"):
        assert detail not in shown and detail in folded, detail
    assert "The PDF could not be made" in shown


def test_saving_the_account_a_dead_letter_asked_for_says_operations_now_replay_it(finance_admin: Client) -> None:
    route, letter = unbilled_route_dead_letter(customer_name="Ege Foods")
    other_route, other = unbilled_route_dead_letter(customer_name="Marmara Glass")
    response = finance_admin.post(f"{ACCOUNT_ADD}?customer={route.customer_id}",
                                  {"customer": route.customer_id, **TARIFF}, follow=True)
    shown = [strip_tags(str(message)) for message in response.context["messages"]]
    assert shown[-1] == (
        f"Dead letter #{letter.pk} (route {route.pk}) waited for this billing account: operations now replay it, "
        "and the invoice is issued."
    )
    assert f"#{other.pk}" not in " ".join(shown), "another customer's dead letter is not this account's"
    assert f'href="/admin/consumers/deadletter/{letter.pk}/change/"' in response.content.decode(), "finance may look"


def test_saving_an_account_no_dead_letter_waits_for_says_nothing_more(finance_admin: Client) -> None:
    KnownCustomerFactory(customer_id=61, name="Ege Foods")
    response = finance_admin.post(ACCOUNT_ADD, {"customer": 61, **TARIFF}, follow=True)
    shown = [strip_tags(str(message)) for message in response.context["messages"]]
    assert shown == ["The billing account “Ege Foods (customer 61)” was added successfully."]
