"""`manage.py healthcheck`: exits 0 when what a worker needs answers; the container healthcheck of the workers."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from apps.common.kafka import client_config


class Command(BaseCommand):
    help = "Check the database, and with --kafka / --celery-broker those brokers too; exit 1 naming what failed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kafka", action="store_true", help="the Kafka cluster must answer metadata")
        parser.add_argument("--celery-broker", action="store_true", help="Celery's broker must accept a connection")
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds per check")

    def handle(self, *args: object, kafka: bool, celery_broker: bool, timeout: float, **options: object) -> None:
        checks = {"database": self._database}
        if kafka:
            checks["kafka"] = self._kafka
        if celery_broker:
            checks["celery broker"] = self._celery_broker
        failures = []
        for name, check in checks.items():
            try:
                check(timeout)
            except Exception as error:  # noqa: BLE001 - any failure is "unhealthy", reported by name
                failures.append(f"{name}: {error}")
        if failures:
            raise CommandError("; ".join(failures))
        self.stdout.write(f"ok ({', '.join(checks)})")

    def _database(self, timeout: float) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def _kafka(self, timeout: float) -> None:
        admin = AdminClient(
            client_config(principal="monitor", **{"socket.timeout.ms": int(timeout * 1000), "log_level": 0})
        )
        metadata = admin.list_topics(timeout=timeout)
        if not metadata.brokers:
            raise RuntimeError("no brokers in the metadata")

    def _celery_broker(self, timeout: float) -> None:
        from logiflow.celery import app

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
