"""`manage.py announce_customers`: publish CustomerUpserted for every existing customer (run once after deploying
the customer directory, or whenever a consumer must relearn them; repeats are ignored by revision)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.routing.services import customers_announce


class Command(BaseCommand):
    help = "Publish CustomerUpserted (current revision) for every customer, so invoicing's directory learns them."

    def handle(self, *args: object, **options: object) -> None:
        announced = customers_announce()
        self.stdout.write(f"announced {announced} customers through the outbox")
