"""The event flow's history (minute samples behind the dashboard's charts) and each consumer group's position on
its partitions as last read from the broker (lag measured from outside the consumers)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models


class FlowSample(models.Model):
    """One minute of the event flow, taken by Celery beat (`sample_flow`), kept FLOW_SAMPLE_RETENTION_HOURS: the
    dashboard's charts come from here, so they need nothing but the database."""

    at = models.DateTimeField(db_index=True)
    window_seconds = models.FloatField(help_text="The span this sample's counts cover (normally 60 s).")
    published = models.IntegerField(null=True, help_text="Outbox rows that left the relay's queue in the window.")
    backlog = models.IntegerField(help_text="Outbox rows waiting for the relay at `at`.")
    oldest_pending_age_s = models.FloatField(help_text="Age of the oldest waiting outbox row at `at` (0: none).")
    latency_p50_s = models.FloatField(null=True, help_text="Outbox row created → applied by a consumer group.")
    latency_p95_s = models.FloatField(null=True)
    lag = models.JSONField(default=dict, help_text="Consumer group → total lag, read from the broker (PartitionLag).")
    dead_letters = models.IntegerField(help_text="Unresolved dead letters at `at`.")
    dead_lettered = models.IntegerField(help_text="Dead letters recorded in the window.")

    class Meta:
        db_table = "common_flowsample"  # created by the common app before the model moved here; rows kept
        ordering = ["at"]

    def __str__(self) -> str:
        return f"flow at {self.at:%Y-%m-%d %H:%M}"


class PartitionLag(models.Model):
    """Where a consumer group stands on one partition, read from the broker by a sampler that is not the consumer
    (Celery beat every CONSUMER_LAG_SAMPLE_INTERVAL_S, and the web's /metrics when scraped): a stopped, dead or
    wedged consumer cannot hide its lag. `stuck_since` is the evidence for a stall: the first sample that saw
    lag with the committed offset the partition still has."""

    group = models.CharField(max_length=255, help_text="The consumer group's id on the broker.")
    topic = models.CharField(max_length=255)
    partition = models.IntegerField()
    committed = models.BigIntegerField(help_text="The group's committed offset (the log start if it has none).")
    high = models.BigIntegerField(help_text="The partition's end offset (high watermark).")
    sampled_at = models.DateTimeField()
    stuck_since = models.DateTimeField(
        null=True, help_text="Since when the partition has had lag and this same committed offset (empty: no lag)."
    )

    class Meta:
        ordering = ["group", "topic", "partition"]
        constraints = [
            models.UniqueConstraint(fields=["group", "topic", "partition"], name="ops_partitionlag_unique_partition"),
        ]

    def __str__(self) -> str:
        return f"{self.group} on {self.topic}[{self.partition}]: lag {self.lag}"

    @property
    def lag(self) -> int:
        return max(0, self.high - self.committed)

    @property
    def stuck_seconds(self) -> float:
        """How long, by the samples' own timestamps, the partition has had lag and no progress (0: it has none)."""
        return (self.sampled_at - self.stuck_since).total_seconds() if self.stuck_since else 0.0

    @property
    def stalled(self) -> bool:
        return self.lag > 0 and self.stuck_seconds >= settings.CONSUMER_LAG_STALL_SECONDS

    def observe(self, *, committed: int, high: int, at: datetime) -> None:
        """Take a newer sample: the stall clock starts at the first sample with lag and runs while the committed
        offset stays put; progress (any move) or no lag stops it."""
        lagging = high > committed
        if not lagging:
            self.stuck_since = None
        elif self.stuck_since is None or committed != self.committed:
            self.stuck_since = at
        self.committed, self.high, self.sampled_at = committed, high, at
