"""`manage.py embedded_broker`: Tansu on KAFKA_BOOTSTRAP_SERVERS' address for `make run`."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings


def test_an_address_without_a_port_is_refused_before_tansu_starts(settings: Settings) -> None:
    settings.KAFKA_BOOTSTRAP_SERVERS = "localhost"
    with pytest.raises(CommandError, match="has no port"):
        call_command("embedded_broker")


def test_tansu_refuses_to_pretend_it_authenticates(settings: Settings) -> None:
    settings.KAFKA_SECURITY_PROTOCOL = "SASL_PLAINTEXT"
    with pytest.raises(CommandError, match="the embedded tansu offers PLAINTEXT only"):
        call_command("embedded_broker", "--kind", "tansu")


def test_apache_kafka_with_sasl_needs_every_principals_credentials(settings: Settings) -> None:
    settings.KAFKA_SECURITY_PROTOCOL = "SASL_PLAINTEXT"
    settings.KAFKA_PRINCIPALS = {kind: {"username": kind, "password": "secret" if kind != "relay" else ""}
                                 for kind in ("relay", "consumer", "monitor", "admin")}
    with pytest.raises(CommandError, match="KAFKA_RELAY_USERNAME/PASSWORD not set"):
        call_command("embedded_broker", "--kind", "kafka")
