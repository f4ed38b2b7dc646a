"""Liveness of the long-running workers: one heartbeat row per relay, consumer or Celery worker process."""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """A worker process's last sign of life, written at most every HEARTBEAT_INTERVAL_S by the worker itself."""

    class Kind(models.TextChoices):
        RELAY = "relay", "Outbox relay"
        CONSUMER = "consumer", "Consumer"
        CELERY = "celery", "Celery worker"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    group = models.CharField(
        max_length=100, blank=True, help_text="The consumer group; empty for the relay and Celery workers."
    )
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

