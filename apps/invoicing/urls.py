"""Invoicing's API routes, included under /api/v1/."""

from django.urls import path

from apps.invoicing import apis

urlpatterns = [
    path("invoices/", apis.InvoiceListApi.as_view(), name="invoice-list"),
    path("invoices/<id:invoice_id>/", apis.InvoiceDetailApi.as_view(), name="invoice-detail"),
    path("invoices/<id:invoice_id>/pdf/", apis.InvoicePdfApi.as_view(), name="invoice-pdf"),
    path("billing-accounts/", apis.BillingAccountListCreateApi.as_view(), name="billing-account-list"),
    path("billing-accounts/<id:customer_id>/", apis.BillingAccountDetailApi.as_view(), name="billing-account-detail"),
]
