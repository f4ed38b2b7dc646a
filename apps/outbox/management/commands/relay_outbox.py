"""`manage.py relay_outbox`: publish committed outbox rows to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.common.workers import run_worker
from apps.outbox.relay import OutboxRelay


class Command(BaseCommand):
    help = "Relay outbox rows to Kafka (several relays may run at once on PostgreSQL)."

    def handle(self, *args: object, **options: object) -> None:
        relay = OutboxRelay()
        run_worker(relay)
        self.stdout.write(
            f"relay stopped: {relay.totals['published']} published, {relay.totals['failed']} failed"
        )
