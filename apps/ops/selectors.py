"""Reads of the event flow's history: the minute samples behind the dashboard's charts."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from apps.ops.models import FlowSample


def flow_samples(*, hours: int = 24) -> list[FlowSample]:
    return list(FlowSample.objects.filter(at__gte=timezone.now() - timedelta(hours=hours)).order_by("at"))


def lag_by_group(samples: list[FlowSample]) -> dict[str, list[tuple[datetime, float | None]]]:
    """Consumer group -> its total lag at each sample; None where the group had no live heartbeat then."""
    groups = sorted({group for sample in samples for group in sample.lag})
    return {group: [(s.at, float(s.lag[group]) if group in s.lag else None) for s in samples] for group in groups}
