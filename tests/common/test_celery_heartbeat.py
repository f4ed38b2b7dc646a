"""A Celery worker's heartbeat: written by the worker process itself from the moment it is ready (its broker, by
default `filesystem://`, answers no `inspect ping`), removed when it stops cleanly."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from celery import signals
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.models import Heartbeat
from logiflow import celery as celery_module

pytestmark = pytest.mark.django_db(transaction=True)  # the heartbeat thread writes on a connection of its own


def _until(check: Callable[[], object], what: str, *, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def ready_worker(settings: SettingsWrapper) -> Iterator[None]:
    """Celery's `worker_ready` sent as a starting worker sends it; `worker_shutdown` at the end whatever happens."""
    settings.HEARTBEAT_INTERVAL_S = 0.05
    signals.worker_ready.send(sender=None)
    try:
        yield
    finally:
        signals.worker_shutdown.send(sender=None)


def test_a_ready_celery_worker_beats_until_it_stops_then_its_heartbeat_is_gone(ready_worker: None) -> None:
    _until(lambda: Heartbeat.objects.filter(kind=Heartbeat.Kind.CELERY).exists(), "no heartbeat from the worker")
    first = Heartbeat.objects.get(kind="celery")
    _until(lambda: Heartbeat.objects.get(pk=first.pk).beat_at > first.beat_at, "the worker beat only once")
    assert str(first).startswith("celery ") and first.group == ""

    signals.worker_shutdown.send(sender=None)

    assert not Heartbeat.objects.filter(kind=Heartbeat.Kind.CELERY).exists()
    assert celery_module._heartbeat == []
