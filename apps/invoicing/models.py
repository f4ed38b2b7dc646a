"""Invoicing's own data: the customer directory, billing accounts, invoices, lines and number counters.

An issued invoice never changes its money or lines; only its delivery state (`status`, `sent_at`)
and its PDF rendition move. Rules live in the `services` package; see docs/architecture.md, "Invoicing".
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Concat, Left, LPad, Substr

ZERO = Decimal("0")
HUNDRED = Decimal("100")
# Invoice numbers in issue order: "LF-2026-1000000" after "LF-2026-999999", where text order would put it
# between 100000 and 100001. The sequence after "LF-YYYY-" is left-padded to ten digits for comparison.
NUMBER_ORDER = Concat(Left("number", 8), LPad(Substr("number", 9), 10, Value("0")))


class KnownCustomer(models.Model):
    """Invoicing's directory of routing's customers, learned from CustomerUpserted: lets finance pick a customer
    by name. Keeps the highest `revision` seen; older or repeated events change nothing."""

    customer_id = models.PositiveBigIntegerField(primary_key=True)
    name = models.CharField(max_length=200)
    revision = models.PositiveIntegerField()
    changed_at = models.DateTimeField(help_text="When routing made this revision.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When invoicing learned it.")

    class Meta:
        ordering = ["name", "customer_id"]

    def __str__(self) -> str:
        return f"{self.name} (customer {self.customer_id})"


class BillingAccount(models.Model):
    """Billing data and tariff for one customer of the directory, keyed by routing's customer id (the key of
    invoicing's own KnownCustomer; no foreign key across contexts). The column stays `customer_id`."""

    # PROTECT: the directory is only ever upserted, and an invoiced customer's account must outlive any cleanup.
    customer = models.OneToOneField(
        KnownCustomer, on_delete=models.PROTECT, primary_key=True, db_column="customer_id",
        related_name="billing_account", help_text="A customer routing has announced (the customer directory).",
    )
    name = models.CharField(max_length=200)
    billing_address = models.TextField()
    vat_id = models.CharField("VAT id", max_length=40, blank=True)
    email = models.EmailField(blank=True)
    currency = models.CharField(
        max_length=3, default="EUR", validators=[RegexValidator(r"^[A-Z]{3}$", "Use an ISO 4217 code, e.g. EUR.")]
    )
    rate_per_km = models.DecimalField(max_digits=10, decimal_places=4, validators=[MinValueValidator(ZERO)])
    fee_per_stop = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(ZERO)])
    minimum_charge = models.DecimalField(
        max_digits=12, decimal_places=2, default=ZERO, validators=[MinValueValidator(ZERO)]
    )
    fuel_surcharge_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=ZERO, validators=[MinValueValidator(ZERO), MaxValueValidator(HUNDRED)]
    )
    vat_rate_percent = models.DecimalField(
        "VAT rate %", max_digits=5, decimal_places=2, validators=[MinValueValidator(ZERO), MaxValueValidator(HUNDRED)]
    )
    payment_terms_days = models.PositiveSmallIntegerField(default=30)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (customer {self.customer_id})"


class Invoice(models.Model):
    """An issued invoice or credit note. One *current* invoice per route (see the partial unique constraint)."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"
        SENT = "sent", "Sent"
        # Cancelled by a credit note because the route was recalculated after issue.
        CREDITED = "credited", "Credited"

    class PdfStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        RENDERED = "rendered", "Rendered"
        FAILED = "failed", "Failed"

    number = models.CharField(max_length=20, unique=True)  # LF-YYYY- and 6 to 10 digits
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ISSUED)
    customer = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="invoices")
    credit_for = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_note",
        help_text="For a credit note: the invoice it cancels.",
    )
    route_id = models.PositiveBigIntegerField(db_index=True)
    route_calculation = models.PositiveIntegerField()
    source_event_id = models.UUIDField(null=True, blank=True, help_text="The RouteCalculated event it was issued from.")
    source_edit = models.ForeignKey(
        "consumers.DeadLetterEdit", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Set when it was issued from a dead letter a person edited: the edit, its proposer and (for an "
                  "edit of billed fields) finance's approval.",
    )
    issued_at = models.DateTimeField(db_index=True)
    due_date = models.DateField()
    sent_at = models.DateTimeField(null=True, blank=True)
    # A snapshot of the billing data as issued: later edits to the account never change an issued document.
    customer_name = models.CharField(max_length=200)
    billing_address = models.TextField()
    vat_id = models.CharField("VAT id", max_length=40, blank=True)
    currency = models.CharField(max_length=3)
    vat_rate_percent = models.DecimalField("VAT rate %", max_digits=5, decimal_places=2)
    net_total = models.DecimalField(max_digits=14, decimal_places=2)
    vat_total = models.DecimalField(max_digits=14, decimal_places=2)
    gross_total = models.DecimalField(max_digits=14, decimal_places=2)
    route_summary = models.JSONField(help_text="Truck, depot, stops, distance and ETA from the RouteCalculated event.")
    # The PDF rendition. `pdf_version` is the version wanted; a render stores the version it produced, so a
    # duplicate or late task for an already-rendered version does nothing.
    pdf = models.FileField(upload_to="invoices/%Y/", blank=True)
    pdf_status = models.CharField(max_length=10, choices=PdfStatus.choices, default=PdfStatus.PENDING)
    pdf_version = models.PositiveIntegerField(default=1)
    pdf_rendered_version = models.PositiveIntegerField(default=0)
    pdf_attempts = models.PositiveIntegerField(default=0)
    pdf_last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["route_id"],
                condition=Q(kind="invoice") & ~Q(status="credited"),
                name="invoicing_one_current_invoice_per_route",
            ),
            models.UniqueConstraint(
                fields=["route_id", "route_calculation", "kind"], name="invoicing_one_document_per_calculation"
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "-issued_at"], name="invoicing_customer_issued_idx"),
            # The renders waiting: few rows, read by the dashboard on every refresh and by the stale-render sweep.
            models.Index(fields=["issued_at"], condition=Q(pdf_status="pending"), name="invoicing_pdf_pending_idx"),
        ]

    def __str__(self) -> str:
        return self.number


class InvoiceLine(models.Model):
    """One priced line; `amount` is already rounded half-up to cents."""

    class Kind(models.TextChoices):
        DISTANCE = "distance", "Distance"
        STOPS = "stops", "Stops"
        MINIMUM = "minimum", "Minimum charge"
        FUEL = "fuel", "Fuel surcharge"
        VAT = "vat", "VAT"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.CharField(max_length=200)
    quantity = models.DecimalField(max_digits=12, decimal_places=3)
    unit = models.CharField(max_length=10, blank=True)
    unit_price = models.DecimalField(max_digits=12, decimal_places=4)
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="invoicing_line_position")]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"


class InvoiceNumberCounter(models.Model):
    """The last number issued in a year. Locked (SELECT … FOR UPDATE) by the issuing transaction, so numbers
    are unique and gapless: a rolled-back issue rolls its number back too."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last_number}"
