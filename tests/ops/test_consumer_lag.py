"""Consumer lag measured from outside the consumer: the group's committed offsets read from the broker against
the partitions' end offsets, so a stopped consumer shows growing lag, named by partition, and a group with lag
and no progress for CONSUMER_LAG_STALL_SECONDS is flagged stalled (dashboard, /metrics, /readyz).

Time is driven by the samples' timestamps (`now=`), never by sleeping."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.kafka import consumer_config
from apps.ops.models import PartitionLag
from apps.ops.services import flow_sample_take
from tests.ops.support import GROUP, produce, sample_until
from tests.support.metrics import samples


def _operations() -> Client:
    user = User.objects.create_user("ops-user", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="operations"))
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.mark.django_db
def test_a_stopped_group_shows_growing_lag_by_partition_and_is_flagged_stalled_after_the_threshold(
    stopped_group: str,
) -> None:
    t0 = timezone.now()
    assert sample_until(0, now=t0).lag == 0  # caught up when it stopped

    produce(stopped_group, partition=0, count=3)
    produce(stopped_group, partition=1, count=1)
    first = sample_until(4, now=t0 + timedelta(seconds=5))
    produce(stopped_group, partition=0, count=2)
    growing = sample_until(6, now=t0 + timedelta(seconds=19))
    stalled = sample_until(6, now=t0 + timedelta(seconds=25))

    assert first.lag == 4 and growing.lag == 6  # grows while nobody consumes
    assert [(p.topic, p.partition, p.committed, p.high, p.lag) for p in growing.lagging] == [
        (stopped_group, 0, 2, 7, 5), (stopped_group, 1, 0, 1, 1),
    ]
    assert not first.stalled and not growing.stalled  # 14 s without progress: below the 20 s threshold
    assert [(p.topic, p.partition) for p in stalled.stalled] == [(stopped_group, 0), (stopped_group, 1)]
    assert stalled.stalled_for == 20.0  # lag first seen at t0 + 5 s, no committed offset moved since


@pytest.mark.django_db
def test_progress_clears_the_stall_and_starts_its_clock_again(stopped_group: str) -> None:
    t0 = timezone.now()
    produce(stopped_group, partition=0, count=3)
    sample_until(3, now=t0)
    assert sample_until(3, now=t0 + timedelta(seconds=30)).stalled

    committer = Consumer(consumer_config(GROUP, **{"enable.auto.commit": False}))
    committer.commit(offsets=[TopicPartition(stopped_group, 0, 4)], asynchronous=False)  # one more was handled
    committer.close()
    moved = sample_until(2, now=t0 + timedelta(seconds=35))

    assert not moved.stalled
    row = PartitionLag.objects.get(group=GROUP, topic=stopped_group, partition=0)
    assert row.stuck_since == t0 + timedelta(seconds=35)


@pytest.mark.django_db
def test_readyz_is_degraded_naming_the_stalled_group(stopped_group: str, client: Client) -> None:
    t0 = timezone.now()
    produce(stopped_group, partition=0, count=1)
    sample_until(1, now=t0 - timedelta(seconds=30))
    before = client.get("/readyz").json()
    sample_until(1, now=t0)

    response = client.get("/readyz")

    assert "degraded" not in before  # lag seen once: no stall yet
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert f"consumer_lag:{GROUP}" in response.json()["degraded"]


@pytest.mark.django_db
def test_web_metrics_read_the_lag_from_the_broker_at_scrape_time_and_flag_the_stall(
    stopped_group: str, client: Client, settings: SettingsWrapper
) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    produce(stopped_group, partition=0, count=3)
    sample_until(3, now=timezone.now() - timedelta(seconds=60))  # an earlier sample, as beat took it
    produce(stopped_group, partition=1, count=2)

    def lag(partition: int) -> tuple:
        labels = (("group", GROUP), ("partition", str(partition)), ("topic", stopped_group))
        return "logiflow_consumer_group_lag", labels

    scraped: dict = {}
    deadline = time.monotonic() + 30
    while scraped.get(lag(1)) != 2:  # the scrape itself reads the broker: no beat sample saw partition 1's lag
        assert time.monotonic() < deadline, scraped
        scraped = samples(client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").content.decode())

    assert scraped[lag(0)] == 3
    assert scraped[("logiflow_consumer_group_stalled", (("group", GROUP),))] == 1
    assert scraped[("logiflow_consumer_lag_broker_up", ())] == 1


@pytest.mark.django_db
def test_the_dashboard_names_a_stalled_groups_lagging_partitions_without_any_heartbeat(stopped_group: str) -> None:
    t0 = timezone.now()
    produce(stopped_group, partition=1, count=4)
    sample_until(4, now=t0 - timedelta(seconds=45))
    sample_until(4, now=t0)

    page = _operations().get("/admin/common/heartbeat/flow/").content.decode()

    assert f"{stopped_group}[1]: 4" in page
    assert "stalled: no progress for 45 s" in page


@pytest.mark.django_db
def test_the_minute_sample_records_lag_measured_from_the_broker_not_from_heartbeats(stopped_group: str) -> None:
    produce(stopped_group, partition=0, count=2)
    sample_until(2, now=timezone.now())

    sample = flow_sample_take()

    assert sample.lag[GROUP] == 2  # no consumer heartbeat exists: the broker's numbers are used


def test_beat_samples_the_lag_every_configured_interval(settings: SettingsWrapper) -> None:
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "apps.ops.tasks.sample_consumer_lag")
    assert entry["schedule"] == settings.CONSUMER_LAG_SAMPLE_INTERVAL_S <= settings.CONSUMER_LAG_STALL_SECONDS / 2
