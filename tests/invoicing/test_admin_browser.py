"""Finance's admin in a real (headless) Chromium: the billing account form's customer autocomplete (Django's vendored
select2) searched by typing part of a name, picked and saved; the invoice page and the account form fit 1,280 px;
no CSP violation.

Skipped without Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)."""

from __future__ import annotations

from typing import Any

from apps.invoicing.models import BillingAccount, Invoice
from tests.invoicing.factories import KnownCustomerFactory, UserFactory, issued_invoice, three_stop_route
from tests.support.browser import MARKS, OVERFLOWING, SHOTS, WIDTH, browse, require_playwright, text_lines

sync_api = require_playwright()
pytestmark = MARKS

ACCOUNT_ADD = "/admin/invoicing/billingaccount/add/"
OPTION = ".select2-results__option"


def _fits(page: Any, url: str) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, url
    assert page.evaluate(OVERFLOWING) == [], url


def _search_customers(page: Any, typed: str, offered: list[str]) -> Any:
    """Open the customer field's autocomplete, type into its search box, wait until it offers `offered` (the
    results of the whole term: select2 asks the server again after each pause in typing); returns the options."""
    page.click(".field-customer .select2-selection")
    page.locator(".select2-search__field").press_sequentially(typed, delay=30)
    options = page.locator(OPTION)
    sync_api.expect(options).to_have_text(offered)
    return options


def test_finance_picks_a_customer_by_typing_part_of_its_name_and_saves_the_account(live_server: Any) -> None:
    KnownCustomerFactory(customer_id=61, name="Ege Foods")
    KnownCustomerFactory(customer_id=62, name="Marmara Glass")
    KnownCustomerFactory(customer_id=63, name="Egeli Tekstil")
    finance = UserFactory(role="finance")
    with browse(live_server.url, finance) as (page, violations):
        page.goto(live_server.url + ACCOUNT_ADD)
        options = _search_customers(page, "ege", ["Ege Foods (customer 61)", "Egeli Tekstil (customer 63)"])
        options.filter(has_text="Ege Foods").click()
        assert page.locator(".field-customer .select2-selection__rendered").inner_text().endswith(
            "Ege Foods (customer 61)"
        )
        page.fill("#id_name", "Ege Foods A.S.")
        page.fill("#id_billing_address", "Alsancak, Izmir")
        page.fill("#id_rate_per_km", "1.10")
        page.fill("#id_fee_per_stop", "12")
        page.fill("#id_vat_rate_percent", "20")
        page.click("input[name=_save]")
        page.wait_for_url("**/admin/invoicing/billingaccount/")
    account = BillingAccount.objects.get()
    assert (account.customer_id, account.name, account.customer.name) == (61, "Ege Foods A.S.", "Ege Foods")
    assert not violations, violations


def test_the_invoice_page_and_the_account_forms_with_the_autocomplete_open_fit_1280_px(live_server: Any) -> None:
    invoice = issued_invoice(three_stop_route(route_id=1))
    KnownCustomerFactory(customer_id=61, name="Ege Foods")
    finance = UserFactory(role="finance")
    with browse(live_server.url, finance) as (page, violations):
        url = f"/admin/invoicing/invoice/{invoice.pk}/change/"
        page.goto(live_server.url + url)
        page.screenshot(path=str(SHOTS / "invoice_view.png"), full_page=True)
        _fits(page, url)

        page.goto(live_server.url + ACCOUNT_ADD)
        _search_customers(page, "61", ["Ege Foods (customer 61)"])
        page.screenshot(path=str(SHOTS / "billing_account_add.png"), full_page=True)
        _fits(page, ACCOUNT_ADD)

        url = f"/admin/invoicing/billingaccount/{invoice.customer_id}/change/"  # the customer shown read-only
        page.goto(live_server.url + url)
        page.screenshot(path=str(SHOTS / "billing_account_change.png"), full_page=True)
        _fits(page, url)
    assert not violations, violations


def test_the_invoice_list_with_rendered_pdfs_fits_1280_px(live_server: Any) -> None:
    for route_id in (1, 2, 3):
        invoice = issued_invoice(three_stop_route(route_id=route_id, customer_id=70 + route_id,
                                                  customer_name=f"Anadolu Textiles and Garments Wholesale {route_id}"))
        Invoice.objects.filter(pk=invoice.pk).update(pdf=f"invoices/2026/{invoice.number}.pdf",
                                                     pdf_status=Invoice.PdfStatus.RENDERED)
    finance = UserFactory(role="finance")
    with browse(live_server.url, finance) as (page, violations):
        page.goto(live_server.url + "/admin/invoicing/invoice/")
        page.screenshot(path=str(SHOTS / "invoice_list.png"), full_page=True)
        assert page.locator("#result_list td.field-pdf_link a").count() == 3
        _fits(page, "invoice list")
        # Each PDF link whole on one line, each issue time on two at most (its date, then its time and zone).
        links = text_lines(page, "#result_list td.field-pdf_link")
        times = text_lines(page, "#result_list td.field-issued")
        assert len(links) == len(times) == 3
        assert [cell for cell in links if cell[1] != 1] == [] and [cell for cell in times if cell[1] > 2] == []
    assert not violations, violations
