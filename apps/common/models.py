"""Liveness of the long-running workers: one heartbeat row per relay or consumer process."""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """A worker process's last sign of life, written at most every HEARTBEAT_INTERVAL_S by the worker itself."""

    class Kind(models.TextChoices):
        RELAY = "relay", "Outbox relay"
        CONSUMER = "consumer", "Consumer"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    group = models.CharField(max_length=100, blank=True, help_text="The consumer group; empty for the relay.")
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)
    last_batch_at = models.DateTimeField(null=True, blank=True, help_text="The last iteration that moved messages.")
    # Consumers: [{"topic", "partition", "committed", "high", "lag"}] of the assigned partitions.
    partitions = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["kind", "group", "host", "pid"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "group", "host", "pid"], name="common_heartbeat_process_uniq")
        ]
        permissions = [("view_flow_dashboard", "Can view the event-flow dashboard and /metrics")]

    def __str__(self) -> str:
        name = f"{self.kind}[{self.group}]" if self.group else self.kind
        return f"{name} {self.host}:{self.pid}"


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
    lag = models.JSONField(default=dict, help_text="Consumer group → total lag, from live heartbeats.")
    dead_letters = models.IntegerField(help_text="Unresolved dead letters at `at`.")
    dead_lettered = models.IntegerField(help_text="Dead letters recorded in the window.")

    class Meta:
        ordering = ["at"]

    def __str__(self) -> str:
        return f"flow at {self.at:%Y-%m-%d %H:%M}"
