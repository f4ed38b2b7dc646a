"""Finance's admin: read-only invoices (with lines, PDF link, re-render and mark-as-sent), billing accounts (opened
for a customer picked by name from the directory) and the read-only customer directory."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.common.admin import ReadOnlyAdminMixin, pretty_json
from apps.common.errors import ApplicationError
from apps.common.timezones import list_time, local_time
from apps.consumers import selectors as ledger
from apps.invoicing.handlers import billing_account_fix_url
from apps.invoicing.models import NUMBER_ORDER, BillingAccount, Invoice, InvoiceLine, KnownCustomer
from apps.invoicing.services.billing_accounts import (
    BILLING_ACCOUNT_FIELDS,
    billing_account_create,
    billing_account_update,
)
from apps.invoicing.services.delivery import invoice_mark_sent
from apps.invoicing.services.pdfs import invoice_request_rerender


class InvoiceLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = InvoiceLine
    fields = ["position", "kind", "description", "quantity", "unit", "unit_price", "amount"]
    readonly_fields = fields
    extra = 0
    can_delete = False


_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


class IssuedMonthFilter(admin.SimpleListFilter):
    title = "month issued"
    parameter_name = "month"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        months = model_admin.get_queryset(request).dates("issued_at", "month", order="DESC")
        return [(month.strftime("%Y-%m"), month.strftime("%B %Y")) for month in months]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
        if not self.value():
            return queryset
        found = _MONTH.fullmatch(self.value())
        if found is None:  # a hand-written URL: say so and list everything rather than answer 500
            messages.warning(request, f"The month filter takes YYYY-MM, not {self.value()[:20]!r}: ignored.")
            return queryset
        return queryset.filter(issued_at__year=int(found[1]), issued_at__month=int(found[2]))


# What makes a recalculated route's invoice be cancelled by a credit note and issued again (services.issuing.billed).
REISSUE_HELP = (
    "A route's invoice is cancelled by a credit note and issued again only when a recalculation changes what it "
    "bills: the distance or the stops. A recalculation that moves only times (a truck's new average speed) keeps "
    "this invoice, with the plan it was issued for."
)


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    # Eight columns, so the list fits 1,280 px beside the filters: the total carries its currency, the PDF column
    # its link once rendered and its status before.
    list_display = ["number_in_order", "kind", "customer", "route_id", "status", "total", "issued", "pdf_link"]
    list_filter = ["status", "pdf_status", "kind", "customer", IssuedMonthFilter]
    search_fields = ["number", "customer_name"]
    list_select_related = ["customer"]
    inlines = [InvoiceLineInline]
    actions = ["rerender_pdf", "mark_sent"]
    fieldsets: list[tuple[str | None, dict[str, Any]]] = [
        (None, {"fields": ["number", "kind", "status", "related_documents", "issued_at", "due_date", "sent_at"]}),
        ("Customer", {"fields": ["customer", "customer_name", "directory_name", "billing_address", "vat_id"]}),
        ("Route", {"fields": ["route_id", "route_calculation", "source_edit_display", "route_summary_table"],
                   "description": REISSUE_HELP}),
        ("Totals", {"fields": ["currency", "vat_rate_percent", "net_total", "vat_total", "gross_total"]}),
        ("PDF", {"fields": ["pdf_link", "pdf_state"]}),
        # Folded: what operations and developers ask about, not what finance reads an invoice for.
        ("Technical details", {"classes": ["collapse"], "fields": [
            "source_event_id", "pdf_status", "pdf_version", "pdf_rendered_version", "pdf_attempts", "pdf_last_error",
        ]}),
    ]

    # An issued invoice is immutable: finance changes it only through the actions below.
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Invoice | None = None) -> bool:
        # Without an object this gates the actions; an invoice's own page is a view (no Save, no history entry).
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="number", ordering=NUMBER_ORDER)
    def number_in_order(self, invoice: Invoice) -> str:
        return invoice.number

    @admin.display(description="issued at", ordering="issued_at")
    def issued(self, invoice: Invoice) -> SafeString | str:
        return list_time(invoice.issued_at)

    @admin.display(description="total", ordering="gross_total")
    def total(self, invoice: Invoice) -> str:
        return f"{invoice.gross_total} {invoice.currency}"

    @admin.display(description="related documents")
    def related_documents(self, invoice: Invoice) -> SafeString | str:
        """A credit note's invoice; a credited invoice's credit note and the invoice that replaced it."""
        if invoice.credit_for_id:
            return format_html("Cancels invoice {}", self._link(invoice.credit_for))
        note = Invoice.objects.filter(credit_for=invoice).first()
        if note is None:
            return "—"
        replacement = (
            Invoice.objects.filter(route_id=invoice.route_id, kind=Invoice.Kind.INVOICE, pk__gt=invoice.pk)
            .order_by("pk").first()
        )
        return format_html(
            "Cancelled by credit note {}{}", self._link(note),
            format_html("; replaced by invoice {}", self._link(replacement)) if replacement else "",
        )

    @staticmethod
    def _link(invoice: Invoice) -> SafeString:
        return format_html('<a href="{}">{}</a>', reverse("admin:invoicing_invoice_change", args=[invoice.pk]),
                           invoice.number)

    @admin.display(description="PDF status")
    def pdf_state(self, invoice: Invoice) -> str:
        if invoice.pdf_status == Invoice.PdfStatus.FAILED:
            return ("The PDF could not be made; \"Re-render PDF\" tries again (the error is under Technical "
                    "details).")
        return invoice.get_pdf_status_display()

    @admin.display(description="Name in the customer directory")
    def directory_name(self, invoice: Invoice) -> str:
        # The invoice keeps the name it was billed to; the directory has routing's current name for the customer.
        return invoice.customer.customer.name

    @admin.display(description="edited event")
    def source_edit_display(self, invoice: Invoice) -> str:
        """Whether a person changed the event it was issued from: who proposed the edit and who approved it."""
        edit = invoice.source_edit
        if edit is None:
            return "no: issued from the event as routing published it"
        url = reverse("admin:consumers_deadletteredit_change", args=[edit.pk])
        who = edit.proposed_by.get_username() if edit.proposed_by else "-"
        if edit.approved_by is None:
            return format_html('<a href="{}">edit #{}</a> by {} (no billed field changed: no approval needed)',
                               url, edit.pk, who)
        return format_html('<a href="{}">edit #{}</a> by {}, approval by {} at {}', url, edit.pk, who,
                           edit.approved_by.get_username(), edit.approved_at)

    @admin.display(description="route summary")
    def route_summary_table(self, invoice: Invoice) -> SafeString:
        """The RouteCalculated the invoice was priced from: its figures, then its stops in visiting order."""
        summary = invoice.route_summary
        stops = summary.get("stops") if isinstance(summary, dict) else None
        if not isinstance(stops, list):
            return pretty_json(summary)
        depot = summary.get("depot") or {}
        facts = [
            ("truck", summary.get("truck_plate", "—")),
            ("depot", depot.get("name", "—") if isinstance(depot, dict) else depot),
            ("distance (km)", summary.get("distance_km", "—")),
            ("duration (min)", summary.get("duration_minutes", "—")),
            ("departs", _time(summary.get("departs_at"))), ("ETA", _time(summary.get("eta"))),
            ("calculated at", _time(summary.get("calculated_at"))),
        ]
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((s.get("sequence", ""), s.get("name", ""), _time(s.get("eta")), s.get("leg_distance_km", ""),
              f"{s.get('lat', '')}, {s.get('lon', '')}") for s in stops if isinstance(s, dict)),
        )
        return format_html(
            '<table class="route-summary"><tbody>{}</tbody></table>'
            '<table class="route-stops"><thead><tr><th>#</th><th>stop</th><th>ETA</th><th>leg (km)</th>'
            "<th>lat, lon</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", facts), rows,
        )

    @admin.display(description="PDF")
    def pdf_link(self, invoice: Invoice) -> str:
        if not invoice.pdf:
            return invoice.get_pdf_status_display()
        return format_html('<a href="{}">{}.pdf</a>', reverse("invoice-pdf", args=[invoice.pk]), invoice.number)

    @admin.action(permissions=["change"], description="Re-render PDF")
    def rerender_pdf(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        for invoice in queryset:
            invoice_request_rerender(invoice_id=invoice.pk)
        self.message_user(request, f"Re-rendering the PDF of {len(queryset)} invoice(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Mark as sent")
    def mark_sent(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        sent, refused = 0, []
        for invoice in queryset:
            try:
                invoice_mark_sent(invoice_id=invoice.pk)
                sent += 1
            except ApplicationError as error:
                refused.append(error.message)
        if sent:
            self.message_user(request, f"Marked {sent} invoice(s) as sent.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)


def _time(value: Any) -> str:
    """A time of the stored event (ISO 8601 with its offset) as the rest of the page shows times."""
    moment = parse_datetime(value) if isinstance(value, str) else None
    return local_time(moment) if moment else (str(value) if value else "—")


class BillingAccountForm(forms.ModelForm):
    class Meta:
        model = BillingAccount
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "customer" in self.fields:  # a new account (an existing one shows its customer read-only)
            self.fields["customer"].help_text = (
                "Type part of the customer's name, or the start of its id. Only customers routing has announced "
                "and that have no billing account yet are offered."
            )


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    """A new account's customer is picked from the directory with the admin's autocomplete (KnownCustomerAdmin's
    search); the form refuses an id that is not in the directory or already has an account."""

    form = BillingAccountForm
    autocomplete_fields = ["customer"]
    list_display = ["customer_number", "name", "directory_name", "currency", "rate_per_km", "fee_per_stop",
                    "minimum_charge", "fuel_surcharge_percent", "vat_rate_percent"]
    search_fields = ["name", "^customer__customer_id", "vat_id"]
    list_filter = ["currency"]
    fields = ["customer", *BILLING_ACCOUNT_FIELDS, "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]
    list_select_related = ["customer"]

    @admin.display(description="customer id", ordering="customer_id")
    def customer_number(self, account: BillingAccount) -> int:
        return account.customer_id

    @admin.display(description="Name in the customer directory", ordering="customer__name")
    def directory_name(self, account: BillingAccount) -> str:
        return account.customer.name

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The key ties the account to routing's customer; it is chosen once.
        return [*self.readonly_fields, "customer"] if obj else self.readonly_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        # `?customer_id=` too: the API's name for the key.
        if "customer" not in initial and request.GET.get("customer_id", "").isdigit():
            initial["customer"] = request.GET["customer_id"]
        return initial

    def save_model(self, request: HttpRequest, obj: BillingAccount, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in form.cleaned_data if name != "customer"}
        if change:
            billing_account_update(
                account=BillingAccount.objects.get(pk=obj.pk),
                data={name: value for name, value in fields.items() if name in form.changed_data},
            )
        else:
            billing_account_create(customer_id=obj.customer_id, **fields)

    def response_add(self, request: HttpRequest, obj: BillingAccount, post_url_continue: str | None = None) -> Any:
        response = super().response_add(request, obj, post_url_continue)
        self._report_waiting_dead_letters(request, obj)
        return response

    def _report_waiting_dead_letters(self, request: HttpRequest, account: BillingAccount) -> None:
        """The dead letters that asked for this account (their fix link), named: replaying them is operations'
        (docs/architecture.md, "Who replays"), so finance learns what happens next and whom to tell."""
        may_view = request.user.has_perm("consumers.view_deadletter")
        for letter in ledger.unresolved_asking_for(fix_url=billing_account_fix_url(customer_id=account.customer_id)):
            route_id = (ledger.payload_json(letter) or {}).get("route_id")
            name = f"Dead letter #{letter.pk}"
            self.message_user(request, format_html(
                "{} ({}) waited for this billing account: operations now replay it, and the invoice is issued.",
                format_html('<a href="{}">{}</a>', reverse("admin:consumers_deadletter_change", args=[letter.pk]),
                            name) if may_view else name,
                f"route {route_id}" if isinstance(route_id, int) else letter.event_type,
            ), messages.INFO)


@admin.register(KnownCustomer)
class KnownCustomerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The directory is written only by routing's events: finance looks customers up here, never edits them."""

    list_display = ["customer_id", "name", "revision", "changed_at", "updated_at"]
    # By name, or by id as typed so far (a prefix): the billing account form's autocomplete searches here too.
    search_fields = ["name", "^customer_id"]
    readonly_fields = list_display

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[KnownCustomer], search_term: str
    ) -> tuple[QuerySet[KnownCustomer], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if _is_autocomplete_for(request, BillingAccount, "customer"):
            # A customer has one account: the new-account form offers only those without one.
            results = results.filter(billing_account__isnull=True)
        return results, may_have_duplicates


def _is_autocomplete_for(request: HttpRequest, model: type[models.Model], field_name: str) -> bool:
    """The request is the admin's autocomplete for `model.field_name` (the widget names its source field)."""
    match = getattr(request, "resolver_match", None)
    return (
        match is not None and match.url_name == "autocomplete"
        and request.GET.get("app_label") == model._meta.app_label
        and request.GET.get("model_name") == model._meta.model_name
        and request.GET.get("field_name") == field_name
    )
