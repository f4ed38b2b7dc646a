"""`manage.py kafka_acls`: create the ACLs of LogiFlow's Kafka principals, idempotently (run once at setup)."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.kafka import Principal, client_config, kafka_topic
from apps.common.kafka_acls import acl_plan, ensure_acls
from apps.consumers import registry
from apps.contracts import all_topics

GRANTED: tuple[Principal, ...] = ("relay", "consumer", "monitor")


class Command(BaseCommand):
    help = (
        "Allow the relay to write the event topics, the consumers to read them and commit their groups, monitoring "
        "to describe them; as the admin principal, on a cluster with SASL and the authorizer on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the broker")

    def handle(self, *args: object, wait: float, **options: object) -> None:
        if not settings.KAFKA_SECURITY_PROTOCOL.upper().startswith("SASL_"):
            raise CommandError("ACLs name principals: set KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL")
        usernames = {kind: settings.KAFKA_PRINCIPALS[kind]["username"] for kind in GRANTED}
        if missing := [f"KAFKA_{kind.upper()}_USERNAME" for kind, name in usernames.items() if not name]:
            raise CommandError(f"whom should the ACLs name? {', '.join(missing)} not set")
        plan = acl_plan(topics=[kafka_topic(t) for t in all_topics()], groups=registry.groups(), usernames=usernames)
        admin = AdminClient(client_config(principal="admin", **{"log_level": 0}))
        try:
            result = ensure_acls(admin, plan, timeout=wait)
        except (KafkaException, TimeoutError) as error:
            raise CommandError(f"cannot set the ACLs on {settings.KAFKA_BOOTSTRAP_SERVERS}: {error}") from error
        for kind, name in usernames.items():
            self.stdout.write(f"{kind}: User:{name}")
        self.stdout.write(f"acls: {result['created']} created, {result['existed']} existed")
