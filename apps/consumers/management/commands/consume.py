"""`manage.py consume <group>`: run one consumer group until SIGTERM/SIGINT (then commit, leave the group, exit 0)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.metrics import serve_worker_metrics
from apps.common.telemetry import configure_telemetry
from apps.common.workers import Backoff, run_worker
from apps.consumers import registry
from apps.consumers.runtime import ConsumerWorker


class Command(BaseCommand):
    help = "Consume the topics of one consumer group's handlers (e.g. `consume invoicing`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group", help="the consumer group, e.g. invoicing or routing")
        parser.add_argument("--batch-size", type=int, default=None, help="messages per consume call and transaction")
        parser.add_argument("--poll-timeout", type=float, default=None, help="seconds to wait for messages")
        parser.add_argument(
            "--group-id", default=None,
            help="Kafka consumer group id (default: the group name); the inbox is still keyed by the group name",
        )
        parser.add_argument("--metrics-port", type=int, default=None,
                            help="serve this process's metrics on this port (default CONSUMER_METRICS_PORT; 0: off)")

    def handle(
        self, *args: object, group: str, batch_size: int | None, poll_timeout: float | None, group_id: str | None,
        metrics_port: int | None = None, **options: object,
    ) -> None:
        known = registry.groups()
        if group not in known:
            raise CommandError(f"unknown consumer group {group!r}; known groups: {', '.join(known) or 'none'}")
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            worker = ConsumerWorker(group, group_id=group_id, batch_size=batch_size, poll_timeout=poll_timeout)
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        configure_telemetry(f"logiflow-consumer-{group}")
        serve_worker_metrics(settings.CONSUMER_METRICS_PORT if metrics_port is None else metrics_port, name=worker.name)
        # The delay doubles per consecutive failure; it resets after a batch was applied, or a minute healthy.
        run_worker(worker, backoff=Backoff(initial=0.5, maximum=30.0, healthy_after=60.0))
