"""The event-flow dashboard and the minute samples behind its charts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from apps import outbox
from apps.common.models import Heartbeat
from apps.consumers.models import InboxEntry
from apps.ops.charts import PALETTE, line_chart, lines_chart
from apps.ops.models import FlowSample, PartitionLag
from apps.ops.selectors import lag_by_group
from apps.ops.services import flow_sample_take
from apps.outbox.models import OutboxEvent, PendingEvent
from tests.consumers.factories import dead_letter
from tests.factories import route_calculated


def _browser(group: str) -> Client:
    user = User.objects.create_user(f"{group}-user", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.mark.django_db
def test_the_dashboard_shows_operations_workers_backlog_lag_and_failure_groups_with_links() -> None:
    now = timezone.now()
    Heartbeat.objects.create(kind="consumer", group="invoicing", host="h", pid=7, started_at=now, beat_at=now)
    PartitionLag.objects.create(group="invoicing", topic="routing.events", partition=3, committed=10, high=52,
                                sampled_at=now - timedelta(minutes=1), stuck_since=now - timedelta(minutes=1))
    Heartbeat.objects.create(kind="relay", host="h", pid=8, started_at=now, beat_at=now - timedelta(hours=1))
    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=1))
    dead = dead_letter(1, error=RuntimeError("billing account missing for customer 12"))
    for at in (now - timedelta(minutes=2), now - timedelta(minutes=1)):
        flow_sample_take(now=at)

    response = _browser("operations").get("/admin/common/heartbeat/flow/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Silent: relay" in page
    assert "1 row waiting for the relay" in page
    assert re.search(r"1 row waiting for the relay; the oldest for \d+ s\.", page)  # seconds, not 0:00:00
    assert "<td>invoicing</td><td>42</td>\n        <td>routing.events[3]: 42</td>" in page  # read from the broker
    assert f"/admin/consumers/deadletter/?fingerprint={dead.fingerprint}" in page
    assert page.count('<figure class="flow-chart"><figcaption>') == 5 and page.count("<polyline") >= 5
    assert "Outbox backlog</figcaption>" in page and "Oldest outbox row waiting</figcaption>" in page
    assert "End-to-end latency, p95: no samples yet." in page  # no consumer applied anything in the window
    assert "<script>" not in page  # no inline script: the CSP allows scripts from this server only
    assert "script-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_the_dashboard_is_refused_to_dispatchers_and_finance() -> None:
    assert _browser("dispatcher").get("/admin/common/heartbeat/flow/").status_code == 403
    assert _browser("finance").get("/admin/common/heartbeat/flow/").status_code == 403


@pytest.mark.django_db
def test_a_sample_counts_rows_that_left_the_queue_since_the_previous_sample(settings: SettingsWrapper) -> None:
    start = timezone.now() - timedelta(minutes=1)
    first = flow_sample_take(now=start)
    with transaction.atomic():
        ids = [outbox.publish(route_calculated(truck_id=truck)) for truck in (1, 2, 3)]
    PendingEvent.objects.filter(event__event_id__in=ids[:2]).delete()  # what the relay does once confirmed
    created = OutboxEvent.objects.get(event_id=ids[0]).created_at
    InboxEntry.objects.create(group="invoicing", event_id=ids[0], processed_at=created + timedelta(seconds=2))

    second = flow_sample_take(now=timezone.now() + timedelta(seconds=3))

    assert first.published is None  # nothing to compare with
    assert (second.published, second.backlog) == (2, 1)
    assert second.latency_p95_s == pytest.approx(2.0)
    assert second.oldest_pending_age_s >= 0


@pytest.mark.django_db
def test_samples_older_than_the_retention_are_pruned(settings: SettingsWrapper) -> None:
    settings.FLOW_SAMPLE_RETENTION_HOURS = 48
    now = timezone.now()
    FlowSample.objects.create(at=now - timedelta(hours=49), window_seconds=60, backlog=0, oldest_pending_age_s=0,
                              dead_letters=0, dead_lettered=0)

    flow_sample_take(now=now)

    assert list(FlowSample.objects.values_list("at", flat=True)) == [now]


def test_a_chart_breaks_its_line_at_a_gap_and_escapes_nothing_unsafe() -> None:
    now = timezone.now()
    points = [(now - timedelta(minutes=3), 1.0), (now - timedelta(minutes=2), None), (now - timedelta(minutes=1), 4.0),
              (now, 2.0)]

    svg = str(line_chart(points, title="<b>lag</b>"))

    assert svg.count("<polyline") == 2
    assert "&lt;b&gt;lag&lt;/b&gt;" in svg and "<b>" not in svg
    assert ">4" in svg  # the y axis ends at the largest value


def test_the_lag_chart_draws_one_named_line_per_group_with_gaps_where_a_group_was_silent() -> None:
    now = timezone.now()
    samples = [
        FlowSample(at=now - timedelta(minutes=2), window_seconds=60, backlog=0, oldest_pending_age_s=0, dead_letters=0,
                   dead_lettered=0, lag={"invoicing": 5, "routing": 1}),
        FlowSample(at=now - timedelta(minutes=1), window_seconds=60, backlog=0, oldest_pending_age_s=0, dead_letters=0,
                   dead_lettered=0, lag={"invoicing": 7}),
        FlowSample(at=now, window_seconds=60, backlog=0, oldest_pending_age_s=0, dead_letters=0, dead_lettered=0,
                   lag={"invoicing": 2, "routing": 3}),
    ]

    series = lag_by_group(samples)
    svg = str(lines_chart(series, title="Consumer lag by group"))

    assert series["routing"] == [(samples[0].at, 1.0), (samples[1].at, None), (samples[2].at, 3.0)]
    assert svg.count(f'stroke="{PALETTE[0]}"') == 1  # invoicing: one unbroken line
    assert svg.count(f'stroke="{PALETTE[1]}"') == 2  # routing: broken where it had no heartbeat
    assert ">invoicing</text>" in svg and ">routing</text>" in svg
    assert ">7</text>" in svg  # one y axis, up to the largest lag of any group


def test_the_y_axis_top_label_is_short_enough_for_the_charts_left_margin() -> None:
    now = timezone.now()

    def top_label(value: float, unit: str = "") -> str:
        svg = str(line_chart([(now - timedelta(minutes=1), 0.0), (now, value)], title="t", unit=unit))
        return svg.split('text-anchor="end">', 1)[1].split("<", 1)[0]

    assert top_label(3.864841, " s") == "3.86 s"  # was "3.86484 s", cut off at the SVG's left edge
    assert top_label(152340.0) == "152,340"
    assert top_label(42.0) == "42"


@pytest.mark.django_db
def test_the_dashboard_refreshes_from_its_sections_alone_and_refuses_them_to_finance() -> None:
    operations = _browser("operations")

    page = operations.get("/admin/common/heartbeat/flow/").content.decode()
    sections = operations.get("/admin/common/heartbeat/flow/?sections=1").content.decode()

    assert 'src="/static/ops/flow_dashboard.js"' in page and 'data-refresh-url="?sections=1"' in page
    assert "<h3>Outbox</h3>" in sections and "<html" not in sections and "flow_dashboard.js" not in sections
    assert _browser("finance").get("/admin/common/heartbeat/flow/?sections=1").status_code == 403
