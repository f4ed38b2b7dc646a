"""`manage.py kafka_topics`: create LogiFlow's topics, idempotently."""

from __future__ import annotations

from confluent_kafka import KafkaException
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.kafka import ensure_topics, kafka_topic
from apps.contracts import all_topics


class Command(BaseCommand):
    help = "Create the event topics (routing.events, invoicing.events) if they do not exist."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--partitions", type=int, default=None, help="partitions for new topics")
        parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the broker")

    def handle(self, *args: object, partitions: int | None, wait: float, **options: object) -> None:
        if partitions is not None and partitions < 1:
            raise CommandError("--partitions must be at least 1")
        try:
            result = ensure_topics([kafka_topic(t) for t in all_topics()], partitions=partitions, timeout=wait)
        except KafkaException as error:
            raise CommandError(f"cannot create topics on {settings.KAFKA_BOOTSTRAP_SERVERS}: {error}") from error
        for topic, outcome in sorted(result.items()):
            self.stdout.write(f"{topic}: {outcome}")
