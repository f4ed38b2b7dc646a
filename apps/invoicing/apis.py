"""REST API of invoicing, for the finance role: invoices (read-only, with their PDF) and billing accounts."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.filters import IdFilter, StrictFilterSet
from apps.common.permissions import ModelPermissions
from apps.common.serializers import StrictInput
from apps.invoicing.models import BillingAccount, Invoice, KnownCustomer
from apps.invoicing.selectors import billing_account_get, billing_account_list, invoice_get, invoice_list
from apps.invoicing.services.billing_accounts import billing_account_create, billing_account_update

# --- Invoices -------------------------------------------------------------------------------------


class InvoiceLineSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    kind = serializers.CharField()
    description = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=12, decimal_places=3)
    unit = serializers.CharField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=4)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)


class InvoiceOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField()
    kind = serializers.ChoiceField(choices=Invoice.Kind.choices)
    status = serializers.ChoiceField(choices=Invoice.Status.choices)
    customer_id = serializers.IntegerField()
    customer_name = serializers.CharField()
    route_id = serializers.IntegerField()
    route_calculation = serializers.IntegerField()
    source_edit = serializers.IntegerField(
        source="source_edit_id", allow_null=True,
        help_text="Issued from a dead letter a person edited: that edit (GET /api/v1/dead-letter-edits/), with its "
                  "proposer and, for billed fields, finance's approval. Null for an event as routing published it.",
    )
    credit_for = serializers.CharField(source="credit_for.number", allow_null=True, default=None)
    issued_at = serializers.DateTimeField()
    due_date = serializers.DateField()
    sent_at = serializers.DateTimeField(allow_null=True)
    currency = serializers.CharField()
    vat_rate_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    net_total = serializers.DecimalField(max_digits=14, decimal_places=2)
    vat_total = serializers.DecimalField(max_digits=14, decimal_places=2)
    gross_total = serializers.DecimalField(max_digits=14, decimal_places=2)
    pdf_status = serializers.ChoiceField(choices=Invoice.PdfStatus.choices)
    lines = InvoiceLineSerializer(many=True)


class InvoiceFilter(StrictFilterSet):
    route = IdFilter(field_name="route_id")
    customer = IdFilter(field_name="customer_id")
    status = filters.ChoiceFilter(choices=Invoice.Status.choices)
    kind = filters.ChoiceFilter(choices=Invoice.Kind.choices)
    pdf_status = filters.ChoiceFilter(choices=Invoice.PdfStatus.choices)
    date = filters.DateFilter(field_name="issued_at", lookup_expr="date", label="Issued on (YYYY-MM-DD)")
    date_from = filters.DateFilter(field_name="issued_at", lookup_expr="date__gte", label="Issued on or after")
    date_to = filters.DateFilter(field_name="issued_at", lookup_expr="date__lte", label="Issued on or before")

    class Meta:
        model = Invoice
        fields: list[str] = []


class InvoiceListApi(ListAPIView):
    permission_classes = [ModelPermissions]
    serializer_class = InvoiceOutputSerializer
    filterset_class = InvoiceFilter

    def get_queryset(self) -> Any:
        return invoice_list()


class InvoiceDetailApi(APIView):
    permission_classes = [ModelPermissions]
    queryset = Invoice.objects.none()  # names the model whose permissions apply

    @extend_schema(responses=InvoiceOutputSerializer)
    def get(self, request: Request, invoice_id: int) -> Response:
        return Response(InvoiceOutputSerializer(_invoice_or_404(invoice_id)).data)


class _JsonErrors(BaseContentNegotiation):
    """The PDF view answers errors in JSON whatever the client accepts (its success is a raw file)."""

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type

    def select_parser(self, request: Request, parsers: list) -> Any:
        return parsers[0]


class InvoicePdfApi(APIView):
    permission_classes = [ModelPermissions]
    queryset = Invoice.objects.none()
    content_negotiation_class = _JsonErrors

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="No such invoice, or its PDF is not rendered yet."),
        }
    )
    def get(self, request: Request, invoice_id: int) -> FileResponse:
        invoice = _invoice_or_404(invoice_id)
        if not invoice.pdf:
            raise NotFound(_not_rendered_message(invoice))
        return FileResponse(invoice.pdf.open("rb"), content_type="application/pdf", filename=f"{invoice.number}.pdf")


def _invoice_or_404(invoice_id: int) -> Invoice:
    invoice = invoice_get(invoice_id=invoice_id)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} does not exist")
    return invoice


def _not_rendered_message(invoice: Invoice) -> str:
    if invoice.pdf_status == Invoice.PdfStatus.FAILED:
        return f"the PDF of {invoice.number} failed to render; finance can re-render it from the admin"
    return f"the PDF of {invoice.number} is not rendered yet; try again in a moment"


# --- Billing accounts -----------------------------------------------------------------------------


class BillingAccountOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = BillingAccount
        fields = ["customer_id", "name", "billing_address", "vat_id", "email", "currency", "rate_per_km",
                  "fee_per_stop", "minimum_charge", "fuel_surcharge_percent", "vat_rate_percent",
                  "payment_terms_days", "created_at", "updated_at"]


class BillingAccountInputSerializer(StrictInput, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    billing_address = serializers.CharField()
    vat_id = serializers.CharField(max_length=40, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    rate_per_km = serializers.DecimalField(max_digits=10, decimal_places=4, min_value=0)
    fee_per_stop = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0)
    minimum_charge = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    fuel_surcharge_percent = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=100, required=False
    )
    vat_rate_percent = serializers.DecimalField(max_digits=5, decimal_places=2, min_value=0, max_value=100)
    payment_terms_days = serializers.IntegerField(min_value=0, max_value=365, required=False)


class BillingAccountCreateInputSerializer(BillingAccountInputSerializer):
    # Only a customer in the directory (learned from routing) can get an account; an unknown id is a 400 naming
    # `customer_id` ("… object does not exist.").
    customer_id = serializers.PrimaryKeyRelatedField(queryset=KnownCustomer.objects.all())


class BillingAccountListCreateApi(ListAPIView):
    permission_classes = [ModelPermissions]
    serializer_class = BillingAccountOutputSerializer

    def get_queryset(self) -> Any:
        return billing_account_list()

    @extend_schema(request=BillingAccountCreateInputSerializer, responses={201: BillingAccountOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = BillingAccountCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        account = billing_account_create(**{**data, "customer_id": data["customer_id"].pk})
        return Response(BillingAccountOutputSerializer(account).data, status=status.HTTP_201_CREATED)


class BillingAccountDetailApi(APIView):
    permission_classes = [ModelPermissions]
    queryset = BillingAccount.objects.none()

    @extend_schema(responses=BillingAccountOutputSerializer)
    def get(self, request: Request, customer_id: int) -> Response:
        return Response(BillingAccountOutputSerializer(_account_or_404(customer_id)).data)

    @extend_schema(request=BillingAccountInputSerializer(partial=True), responses=BillingAccountOutputSerializer)
    def patch(self, request: Request, customer_id: int) -> Response:
        account = _account_or_404(customer_id)
        serializer = BillingAccountInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        account = billing_account_update(account=account, data=serializer.validated_data)
        return Response(BillingAccountOutputSerializer(account).data)


def _account_or_404(customer_id: int) -> BillingAccount:
    account = billing_account_get(customer_id=customer_id)
    if account is None:
        raise NotFound(f"customer {customer_id} has no billing account")
    return account
