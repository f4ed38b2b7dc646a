"""The relay's own metrics endpoint, scraped from a real process after its batches."""

from __future__ import annotations

import pytest
from django.db import transaction

from apps import outbox
from apps.common.models import Heartbeat
from apps.devstack.process import free_port
from tests.factories import route_calculated
from tests.outbox.support import pending_count
from tests.support.metrics import scrape
from tests.support.processes import Processes, log_of, stop, wait_until


@pytest.mark.django_db(transaction=True)
def test_relay_process_serves_its_published_rows_and_latency_and_keeps_a_heartbeat(start_command: Processes) -> None:
    port = free_port()
    relay = start_command.start("relay_outbox", "--metrics-port", str(port), env={"WORKER_METRICS_ADDR": "127.0.0.1"})
    with transaction.atomic():
        for truck in (1, 2, 3):
            outbox.publish(route_calculated(truck_id=truck))
    wait_until(lambda: pending_count() == 0, timeout=60, explain=lambda: log_of(relay)[-2000:])
    wait_until(lambda: Heartbeat.objects.filter(kind="relay", last_batch_at__isnull=False).exists(), timeout=20,
               explain=lambda: log_of(relay)[-2000:])

    scraped = scrape(port)

    topic = (("topic", "routing.events"),)
    assert scraped[("logiflow_relay_rows_published_total", topic)] == 3
    assert scraped.get(("logiflow_relay_rows_failed_total", topic), 0) == 0
    assert scraped[("logiflow_relay_delivery_latency_seconds_count", topic)] == 3
    assert scraped[("logiflow_relay_batch_duration_seconds_count", ())] >= 1
    assert scraped[("logiflow_worker_last_batch_timestamp_seconds", (("group", ""), ("kind", "relay")))] > 0
    beat = Heartbeat.objects.get(kind="relay")
    assert beat.pid == relay.pid
    stop(relay)
    assert not Heartbeat.objects.filter(kind="relay").exists()  # a clean stop is not a silent relay
