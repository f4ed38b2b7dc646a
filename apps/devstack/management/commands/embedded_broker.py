"""`manage.py embedded_broker`: run `make run`'s broker on KAFKA_BOOTSTRAP_SERVERS' address (Tansu, or Apache Kafka
from the jars of `make kafka-jars`), create the topics and say how long it took to be ready.

With KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT, Apache Kafka runs as docker-compose.yml's does: SCRAM users for the
principals of KAFKA_<KIND>_USERNAME/PASSWORD (created when var/kafka/data is first formatted), the authorizer on,
and the ACLs of `manage.py kafka_acls`."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.devstack.apache_kafka import ApacheKafkaBroker, Sasl
from apps.devstack.tansu import EmbeddedBroker

# Seconds to serve metadata: a first Apache Kafka start formats its storage, and a JVM on a busy laptop is slow.
START_TIMEOUT_S = {"tansu": 30.0, "kafka": 120.0}


class Command(BaseCommand):
    help = "Run the local development broker: Tansu (memory only) or Apache Kafka (data in var/kafka/data)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", choices=("tansu", "kafka"), default="tansu",
                            help="tansu (default): memory only; kafka: Apache Kafka, data kept in var/kafka/data")
        parser.add_argument("--ready-file", type=Path, default=None,
                            help="a file to create once the broker serves and the topics exist")

    def handle(self, *args: object, kind: str = "tansu", ready_file: Path | None = None, **options: object) -> None:
        host, _, port = settings.KAFKA_BOOTSTRAP_SERVERS.split(",")[0].rpartition(":")
        if not port.isdigit():
            raise CommandError(f"KAFKA_BOOTSTRAP_SERVERS={settings.KAFKA_BOOTSTRAP_SERVERS!r} has no port")
        started = time.monotonic()
        sasl = configured_sasl(kind)
        if kind == "kafka":
            kafka_dir = settings.VAR_DIR / "kafka"
            broker: EmbeddedBroker | ApacheKafkaBroker = ApacheKafkaBroker(
                host=host or "127.0.0.1", port=int(port), data_dir=kafka_dir / "data",
                log_path=kafka_dir / "broker.log", sasl=sasl,
            )
            described = f"Apache Kafka (data in {kafka_dir / 'data'}, log in {kafka_dir / 'broker.log'})"
        else:
            broker = EmbeddedBroker(host=host or "127.0.0.1", port=int(port))
            described = "Tansu (data in memory only)"
        try:
            broker.start(timeout=START_TIMEOUT_S[kind])
        except RuntimeError as error:
            raise CommandError(str(error)) from error

        def stop(_signum: int, _frame: FrameType | None) -> None:
            # Only signal the broker here: the main thread is inside Popen.wait(), which holds the lock a
            # second wait() in this handler would need.
            broker.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        call_command("kafka_topics", stdout=self.stdout)
        if sasl is not None:
            call_command("kafka_acls", stdout=self.stdout)
        self.stdout.write(
            f"{described} ready on {broker.bootstrap_servers} in {time.monotonic() - started:.1f} s", ending="\n"
        )
        self.stdout.flush()
        if ready_file is not None:
            ready_file.touch()
        broker.wait()


def configured_sasl(kind: str) -> Sasl | None:
    """The SCRAM users the settings name (None without SASL); refused where the broker cannot provide them."""
    protocol = settings.KAFKA_SECURITY_PROTOCOL.upper()
    if protocol == "PLAINTEXT":
        return None
    if kind != "kafka" or protocol != "SASL_PLAINTEXT":
        raise CommandError(f"KAFKA_SECURITY_PROTOCOL={protocol}: the embedded {kind} offers PLAINTEXT"
                           + (" or SASL_PLAINTEXT" if kind == "kafka" else " only"))
    principals = settings.KAFKA_PRINCIPALS
    missing = [f"KAFKA_{name.upper()}_USERNAME/PASSWORD" for name, login in principals.items()
               if not (login["username"] and login["password"])]
    if missing:
        raise CommandError(f"SASL needs every principal's credentials: {', '.join(missing)} not set")
    admin = principals["admin"]
    users = {login["username"]: login["password"] for name, login in principals.items() if name != "admin"}
    return Sasl(admin=admin["username"], admin_password=admin["password"], users=users)
