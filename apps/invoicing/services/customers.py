"""Invoicing's customer directory: the customers routing announces (CustomerUpserted), kept at their newest
revision, so billing accounts and invoices can name them without asking routing."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction

from apps.invoicing.models import KnownCustomer

logger = logging.getLogger(__name__)


@transaction.atomic
def known_customer_upsert(*, customer_id: int, name: str, revision: int, changed_at: datetime) -> KnownCustomer:
    """Learn a customer (or a newer revision of it) from routing. Idempotent: a repeated or older revision changes
    nothing, so redelivery and re-announcement are harmless and out-of-order events cannot undo a newer name."""
    known = KnownCustomer.objects.select_for_update().filter(pk=customer_id).first()
    if known is None:
        # A concurrent first insert of the same customer is absorbed by the conflict clause, then re-read locked.
        KnownCustomer.objects.bulk_create(
            [KnownCustomer(customer_id=customer_id, name=name, revision=revision, changed_at=changed_at)],
            ignore_conflicts=True,
        )
        known = KnownCustomer.objects.select_for_update().get(pk=customer_id)
        if known.revision == revision and known.name == name:
            return known
    if known.revision >= revision:
        logger.info("customer %s revision %s already known at revision %s; ignored",
                    customer_id, revision, known.revision)
        return known
    known.name, known.revision, known.changed_at = name, revision, changed_at
    known.save(update_fields=["name", "revision", "changed_at", "updated_at"])
    return known
