"""Reads of worker liveness (heartbeats) for the readiness probe, the workers themselves, the admin and the
metrics."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.common.models import Heartbeat


def heartbeats_with_age() -> list[tuple[Heartbeat, float]]:
    """Every heartbeat row with the seconds since it beat."""
    now = timezone.now()
    return [(beat, (now - beat.beat_at).total_seconds()) for beat in Heartbeat.objects.all()]


def heartbeat_is_stale(beat: Heartbeat) -> bool:
    return timezone.now() - beat.beat_at > timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS)


def stale_components() -> list[str]:
    """Names (kind, or kind:group) of workers whose heartbeat is older than HEARTBEAT_STALE_SECONDS and that have
    no fresh sibling of the same kind and group: one dead consumer among three live ones is not an outage."""
    fresh: set[str] = set()
    stale: set[str] = set()
    for beat in Heartbeat.objects.all():
        name = f"{beat.kind}:{beat.group}" if beat.group else beat.kind
        (stale if heartbeat_is_stale(beat) else fresh).add(name)
    return sorted(stale - fresh)


def live_partitions() -> dict[tuple[str, str, int], int]:
    """(group, topic, partition) -> lag, from consumers' live heartbeats (the newest report of a partition wins)."""
    fresh_since = timezone.now() - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS)
    lags: dict[tuple[str, str, int], int] = {}
    beats = Heartbeat.objects.filter(kind=Heartbeat.Kind.CONSUMER, beat_at__gte=fresh_since).order_by("beat_at")
    for beat in beats:
        for partition in beat.partitions:
            lags[beat.group, partition["topic"], partition["partition"]] = partition["lag"]
    return dict(sorted(lags.items()))

