"""Events routing consumes (consumer group `routing`): an issued invoice marks its route invoiced."""

from __future__ import annotations

from apps.consumers.registry import EventMeta, NonRetryableError, handles
from apps.contracts import InvoiceGenerated
from apps.routing.models import Route
from apps.routing.services import route_mark_invoiced


@handles(InvoiceGenerated, group="routing")
def mark_route_invoiced(event: InvoiceGenerated, meta: EventMeta) -> None:
    """Idempotent through the service: a redelivered or older invoice leaves the route as it is."""
    try:
        route_mark_invoiced(route_id=event.route_id, invoice_number=event.number, invoiced_at=event.issued_at)
    except Route.DoesNotExist as error:
        # Retrying cannot create the route: a person must look at it (dead letter, then replay).
        raise NonRetryableError(
            f"InvoiceGenerated {event.number} ({meta.event_id}) names route {event.route_id}, "
            "which routing does not know"
        ) from error
