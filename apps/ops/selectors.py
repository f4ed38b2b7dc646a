"""Reads of the event flow's history (the minute samples behind the dashboard's charts) and of consumer lag as
last read from the broker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from apps.ops.models import FlowSample, PartitionLag


def flow_samples(*, hours: int = 24) -> list[FlowSample]:
    return list(FlowSample.objects.filter(at__gte=timezone.now() - timedelta(hours=hours)).order_by("at"))


def lag_by_group(samples: list[FlowSample]) -> dict[str, list[tuple[datetime, float | None]]]:
    """Consumer group -> its total lag at each sample; None where it was not measured then."""
    groups = sorted({group for sample in samples for group in sample.lag})
    return {group: [(s.at, float(s.lag[group]) if group in s.lag else None) for s in samples] for group in groups}


@dataclass(frozen=True)
class GroupLag:
    """One consumer group's lag as last read from the broker, with the partitions that have some named."""

    group: str
    partitions: list[PartitionLag]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def lagging(self) -> list[PartitionLag]:
        return [p for p in self.partitions if p.lag > 0]

    @property
    def stalled(self) -> list[PartitionLag]:
        """Partitions with lag whose committed offset has not moved for CONSUMER_LAG_STALL_SECONDS."""
        return [p for p in self.partitions if p.stalled]

    @property
    def stalled_for(self) -> float:
        """Seconds the longest-lagging partition has gone without progress (0: none lags)."""
        return max((p.stuck_seconds for p in self.lagging), default=0.0)

    @property
    def sampled_at(self) -> datetime:
        return max(p.sampled_at for p in self.partitions)


def consumer_lag() -> list[GroupLag]:
    """Every sampled consumer group, by name, with its partitions."""
    groups: dict[str, list[PartitionLag]] = {}
    for row in PartitionLag.objects.order_by("group", "topic", "partition"):
        groups.setdefault(row.group, []).append(row)
    return [GroupLag(group, partitions) for group, partitions in groups.items()]


def stalled_groups() -> list[str]:
    """The consumer groups with a stalled partition, for /readyz."""
    return [group.group for group in consumer_lag() if group.stalled]


def lag_totals(*, since: datetime) -> dict[str, int]:
    """Consumer group -> total lag, from partitions sampled at `since` or later (older numbers are not today's)."""
    return {group.group: group.lag for group in consumer_lag() if group.sampled_at >= since}
