"""Delivery of issued invoices: recording that an invoice was sent to its customer."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.common.errors import ApplicationError
from apps.invoicing.models import Invoice


@transaction.atomic
def invoice_mark_sent(*, invoice_id: int) -> Invoice:
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status == Invoice.Status.SENT:
        return invoice
    if invoice.status != Invoice.Status.ISSUED:
        raise ApplicationError(f"{invoice.number} is {invoice.get_status_display().lower()}; it cannot be sent")
    invoice.status = Invoice.Status.SENT
    invoice.sent_at = timezone.now()
    invoice.save(update_fields=["status", "sent_at"])
    return invoice

