"""`manage.py embedded_broker`: run Tansu on KAFKA_BOOTSTRAP_SERVERS' address and create the topics."""

from __future__ import annotations

import signal
from types import FrameType

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.devstack.tansu import EmbeddedBroker


class Command(BaseCommand):
    help = "Run the embedded Kafka-compatible broker (Tansu, memory only) for local development."

    def handle(self, *args: object, **options: object) -> None:
        host, _, port = settings.KAFKA_BOOTSTRAP_SERVERS.split(",")[0].rpartition(":")
        if not port.isdigit():
            raise CommandError(f"KAFKA_BOOTSTRAP_SERVERS={settings.KAFKA_BOOTSTRAP_SERVERS!r} has no port")
        broker = EmbeddedBroker(host=host or "127.0.0.1", port=int(port))
        try:
            broker.start()
        except RuntimeError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Tansu listening on {broker.bootstrap_servers} (data in memory only)")

        def stop(_signum: int, _frame: FrameType | None) -> None:
            # Only signal Tansu here: the main thread is inside Popen.wait(), which holds the lock a
            # second wait() in this handler would need.
            broker.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        call_command("kafka_topics", stdout=self.stdout)
        broker.wait()
