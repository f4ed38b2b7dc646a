"""The web's /metrics: refused by default, answered to the bearer token or an allowed network."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from apps import outbox
from tests.factories import route_calculated
from tests.support.metrics import samples, value


@pytest.mark.django_db
def test_web_metrics_refuse_everyone_by_default(client: Client) -> None:
    assert client.get("/metrics").status_code == 401


@pytest.mark.django_db
def test_web_metrics_answer_the_bearer_token_with_the_database_gauges(
    client: Client, settings: SettingsWrapper
) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=7))
        outbox.publish(route_calculated(truck_id=8))

    refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    answered = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")

    assert refused.status_code == 401
    assert answered.status_code == 200
    assert answered["Content-Type"].startswith("text/plain")
    scraped = samples(answered.content.decode())
    assert scraped[("logiflow_outbox_pending", ())] == 2
    assert scraped[("logiflow_outbox_oldest_pending_age_seconds", ())] >= 0
    assert scraped[("logiflow_metrics_database_up", ())] == 1


@pytest.mark.django_db
def test_web_metrics_answer_an_allowed_network_without_a_token(client: Client, settings: SettingsWrapper) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 401


@pytest.mark.django_db
def test_web_metrics_still_answer_when_the_database_gauges_fail(
    client: Client, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.METRICS_TOKEN = "s3cret-token"

    def broken() -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr("apps.ops.metrics.outbox_backlog", broken)
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")

    scraped = samples(response.content.decode())
    assert response.status_code == 200
    assert scraped[("logiflow_metrics_database_up", ())] == 0
    assert ("logiflow_outbox_pending", ()) not in scraped


@pytest.mark.django_db
def test_web_requests_count_by_url_pattern_not_by_path(client: Client) -> None:
    route = "/api/v1/trucks/<pk>/"
    before = value("logiflow_http_requests_total", method="GET", route=route, status="401")
    timed = value("logiflow_http_request_duration_seconds_count", method="GET", route=route)

    client.get("/api/v1/trucks/1/")
    client.get("/api/v1/trucks/2/")
    client.get("/no/such/page/")
    client.generic("BREW", "/api/v1/trucks/1/")

    assert value("logiflow_http_requests_total", method="GET", route=route, status="401") == before + 2
    assert value("logiflow_http_request_duration_seconds_count", method="GET", route=route) == timed + 2
    assert value("logiflow_http_requests_total", method="GET", route="<unmatched>", status="404") >= 1
    assert value("logiflow_http_requests_total", method="other", route=route, status="401") >= 1


@pytest.mark.django_db
def test_failure_group_series_are_capped_with_an_other_bucket(client: Client, settings: SettingsWrapper) -> None:
    from apps.consumers.ledger import Failure, deadletter_record
    from apps.ops.metrics import FAILURE_GROUP_SERIES
    from tests.consumers.support import happened, raw_message

    settings.METRICS_TOKEN = "s3cret-token"
    groups = FAILURE_GROUP_SERIES + 30
    for i in range(groups):  # distinct exception classes: groups no normalising of messages can merge
        failure = Failure(reason="handler_error", exception_class=f"junk.E{chr(65 + i // 26)}{chr(65 + i % 26)}",
                          message="boom")
        deadletter_record(group="testing", raw=raw_message(happened(seq=i), offset=i), failure=failure, attempts=1)
    scraped = samples(client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").content.decode())
    series = {labels: count for (name, labels), count in scraped.items()
              if name == "logiflow_deadletters_unresolved_by_failure_group"}
    assert len(series) == FAILURE_GROUP_SERIES + 1
    assert series[(("fingerprint", "other"), ("group", "testing"))] == 30
    assert sum(series.values()) == groups


@pytest.mark.django_db
def test_web_metrics_leave_out_the_relays_and_consumers_own_metrics_that_are_always_zero_there(
    client: Client, settings: SettingsWrapper
) -> None:
    settings.METRICS_TOKEN = "s3cret-token"

    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").content.decode()

    assert "logiflow_relay_" not in text and "logiflow_worker_" not in text  # served on the workers' own ports
    assert "logiflow_consumer_handler_duration_seconds" not in text
    assert "logiflow_consumer_end_to_end_latency_seconds" not in text
    assert "logiflow_http_requests_total" in text  # the web's own stay
