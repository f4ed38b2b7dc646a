"""Heartbeats: a silent worker is flagged (in /readyz and the admin) unless a sibling is alive; old rows go."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.models import Heartbeat
from apps.common.selectors import stale_components
from apps.common.services import heartbeats_prune
from apps.common.workers import HeartbeatRecorder


def _beat(kind: str, group: str = "", *, seconds_ago: float, pid: int = 1) -> Heartbeat:
    at = timezone.now() - timedelta(seconds=seconds_ago)
    return Heartbeat.objects.create(kind=kind, group=group, host="worker-1", pid=pid, started_at=at, beat_at=at)


@pytest.mark.django_db
def test_a_worker_silent_beyond_the_stale_limit_is_flagged_by_kind_and_group(settings: SettingsWrapper) -> None:
    settings.HEARTBEAT_STALE_SECONDS = 60
    _beat("relay", seconds_ago=5)
    _beat("consumer", "invoicing", seconds_ago=61)
    _beat("consumer", "routing", seconds_ago=30)

    assert stale_components() == ["consumer:invoicing"]


@pytest.mark.django_db
def test_a_dead_process_beside_a_live_one_of_its_group_is_no_stale_component() -> None:
    _beat("consumer", "invoicing", seconds_ago=600, pid=1)
    _beat("consumer", "invoicing", seconds_ago=1, pid=2)

    assert stale_components() == []


@pytest.mark.django_db
def test_readyz_names_stale_workers_without_failing_the_web(client: Client, settings: SettingsWrapper) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    _beat("relay", seconds_ago=3600)
    _beat("consumer", "invoicing", seconds_ago=3600)

    response = client.get("/readyz", HTTP_AUTHORIZATION="Bearer s3cret-token")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "failing": [], "stale": ["consumer:invoicing", "relay"]}


@pytest.mark.django_db
def test_readyz_names_no_worker_or_consumer_group_to_an_anonymous_caller(client: Client) -> None:
    _beat("consumer", "invoicing", seconds_ago=3600)

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert b"invoicing" not in response.content


@pytest.mark.django_db
def test_readyz_names_stale_workers_to_staff_but_not_to_other_users(client: Client) -> None:
    from django.contrib.auth.models import User

    _beat("consumer", "invoicing", seconds_ago=3600)
    client.force_login(User.objects.create_user("dispatch", password="pw-d-123"))
    assert client.get("/readyz").json() == {"status": "ok"}
    client.force_login(User.objects.create_user("ops", password="pw-o-123", is_staff=True))
    assert client.get("/readyz").json()["stale"] == ["consumer:invoicing"]


@pytest.mark.django_db
def test_the_recorder_writes_at_most_every_interval_and_keeps_the_last_batch_time(settings: SettingsWrapper) -> None:
    settings.HEARTBEAT_INTERVAL_S = 3600
    recorder = HeartbeatRecorder("consumer", "routing")
    recorder.beat(partitions=[{"topic": "t", "partition": 0, "lag": 5}])
    first = Heartbeat.objects.get()
    recorder.progress()
    recorder.beat()  # within the interval: no write

    assert Heartbeat.objects.get().beat_at == first.beat_at
    assert first.last_batch_at is None and first.partitions == [{"topic": "t", "partition": 0, "lag": 5}]
    recorder.beat(force=True)
    assert Heartbeat.objects.get().last_batch_at == recorder.last_batch_at
    recorder.remove()
    assert not Heartbeat.objects.exists()


@pytest.mark.django_db
def test_prune_deletes_only_heartbeats_silent_beyond_the_retention(settings: SettingsWrapper) -> None:
    settings.HEARTBEAT_RETENTION_HOURS = 48
    _beat("relay", seconds_ago=49 * 3600, pid=1)
    kept = _beat("relay", seconds_ago=47 * 3600, pid=2)

    assert heartbeats_prune() == 1
    assert list(Heartbeat.objects.all()) == [kept]


@pytest.mark.django_db
def test_the_heartbeat_admin_shows_operations_which_workers_are_alive(settings: SettingsWrapper) -> None:
    settings.HEARTBEAT_STALE_SECONDS = 60
    _beat("consumer", "routing", seconds_ago=1, pid=11)
    _beat("consumer", "invoicing", seconds_ago=300, pid=12)
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="operations"))
    browser = Client()
    browser.force_login(user)

    page = browser.get("/admin/common/heartbeat/").content.decode()

    assert "consumer[routing] worker-1:11" in page and "consumer[invoicing] worker-1:12" in page
    assert page.count('alt="True"') == 1 and page.count('alt="False"') == 1
