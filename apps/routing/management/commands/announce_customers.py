"""`manage.py announce_customers`: publish CustomerUpserted for every existing customer (run once after deploying
the customer directory, or whenever a consumer must relearn them; repeats are ignored by revision)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.routing.services import customers_announce


class Command(BaseCommand):
    help = "Publish CustomerUpserted (current revision) for every customer, so invoicing's directory learns them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500,
            help="Customers per transaction (each holds one advisory lock per customer until it commits).",
        )

    def handle(self, *args: object, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        announced = customers_announce(
            batch_size=options["batch_size"], on_batch=lambda done: self.stdout.write(f"announced {done} customers")
        )
        self.stdout.write(f"announced {announced} customers through the outbox")
