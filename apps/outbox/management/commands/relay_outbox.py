"""`manage.py relay_outbox`: publish committed outbox rows to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.common.metrics import serve_worker_metrics
from apps.common.telemetry import configure_telemetry
from apps.common.workers import run_worker
from apps.outbox.relay import OutboxRelay


class Command(BaseCommand):
    help = "Relay outbox rows to Kafka (several relays may run at once on PostgreSQL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--metrics-port", type=int, default=None,
                            help="serve this process's metrics on this port (default RELAY_METRICS_PORT; 0: off)")

    def handle(self, *args: object, metrics_port: int | None, **options: object) -> None:
        configure_telemetry("logiflow-relay")
        relay = OutboxRelay()
        serve_worker_metrics(settings.RELAY_METRICS_PORT if metrics_port is None else metrics_port, name=relay.name)
        run_worker(relay, give_up_after=settings.OUTBOX_RELAY_GIVE_UP_S or None)
        self.stdout.write(
            f"relay stopped: {relay.totals['published']} published, {relay.totals['failed']} failed"
        )
