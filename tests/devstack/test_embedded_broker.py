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
