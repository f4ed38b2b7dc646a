"""`manage.py healthcheck`, the container healthcheck of the workers."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.devstack.process import free_port


@pytest.mark.django_db
def test_healthy_when_database_and_kafka_answer(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("healthcheck", "--kafka")
    assert capsys.readouterr().out.strip() == "ok (database, kafka)"


@pytest.mark.django_db
def test_unreachable_kafka_fails_naming_kafka(settings) -> None:  # noqa: ANN001 - pytest-django's fixture
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(CommandError, match=r"^kafka: "):
        call_command("healthcheck", "--kafka", "--timeout", "1")
