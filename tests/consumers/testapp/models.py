"""Rows a test writes to script the handler, and rows the handler writes as its effect."""

from __future__ import annotations

from django.db import models


class Script(models.Model):
    """How the handler behaves for events of `scenario`."""

    scenario = models.CharField(max_length=100, unique=True)
    fail_times = models.PositiveIntegerField(default=0, help_text="raise on the first N attempts of each event")
    broken = models.BooleanField(default=False, help_text="raise until a test sets this back to False")
    non_retryable = models.BooleanField(default=False, help_text="while broken, raise NonRetryableError")
    crash_after_commit = models.BooleanField(default=False, help_text="SIGKILL the process right after the commit")
    sleep_s = models.FloatField(default=0)


class Effect(models.Model):
    """One per handler run that committed: a second row for an event id is a double effect."""

    event_id = models.UUIDField()
    key = models.CharField(max_length=100)
    scenario = models.CharField(max_length=100)
    seq = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
