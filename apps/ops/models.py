"""The event flow's history: minute samples behind the dashboard's charts."""

from __future__ import annotations

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
    lag = models.JSONField(default=dict, help_text="Consumer group → total lag, from live heartbeats.")
    dead_letters = models.IntegerField(help_text="Unresolved dead letters at `at`.")
    dead_lettered = models.IntegerField(help_text="Dead letters recorded in the window.")

    class Meta:
        db_table = "common_flowsample"  # created by the common app before the model moved here; rows kept
        ordering = ["at"]

    def __str__(self) -> str:
        return f"flow at {self.at:%Y-%m-%d %H:%M}"
