"""The transactional outbox: one row per domain event, written in the business transaction.

`OutboxEvent` is the record (what was sent, when, where, or why not); `PendingEvent` is the relay's queue:
one narrow row per outbox row still to send, written in the same transaction and deleted once the
broker confirmed the row (or refused it for good).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db import models


class OutboxEvent(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        PUBLISHED = "published", "Published"
        FAILED = "failed", "Failed"

    # The bigserial id is the relay order. Within one key it equals commit order because
    # `publish` serialises writers of a key (see apps.outbox.services).
    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=200)
    event_type = models.CharField(max_length=200)
    source = models.CharField(max_length=200)
    payload = models.TextField(help_text="The event's JSON, sent as the Kafka value byte for byte.")
    traceparent = models.CharField(max_length=55, blank=True)
    created_at = models.DateTimeField(db_index=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    partition = models.IntegerField(null=True, blank=True)
    offset = models.BigIntegerField(null=True, blank=True)
    # Who last sent a failed row again, and when (admin action "Re-send", `manage.py outbox_resend`). A name,
    # not a foreign key: the record outlives the account. `db_default` keeps raw inserts (publish, the
    # previous release during a deploy) valid without naming these columns.
    resent_at = models.DateTimeField(null=True, blank=True)
    resent_by = models.CharField(max_length=150, blank=True, db_default="")

    # No index may cover a column the relay writes (state, attempts, last_error, published_at, partition,
    # offset): then marking a row is a HOT update (new version in the same page, no index entries), which
    # the table's fillfactor leaves room for (migration 0002). The relay finds its rows in PendingEvent.

    class Meta:
        ordering = ["id"]
        permissions = [("resend_outboxevent", "Can re-send failed outbox events")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.state})"

    def headers(self) -> list[tuple[str, bytes]]:
        """CloudEvents 1.0 Kafka binary-mode headers, plus W3C `traceparent` when there is one."""
        return [
            (name, value.encode())
            for name, value in cloudevents_headers(
                event_id=str(self.event_id),
                source=self.source,
                event_type=self.event_type,
                time=ce_time(self.created_at),
                traceparent=self.traceparent,
            )
        ]


class PendingEvent(models.Model):
    """The relay's queue: an outbox row still to send. Written by `publish`, deleted by the relay.

    Its primary key is the outbox row's id (the relay order); `topic` and `key` repeat the row's, so the
    relay can check per-key order on this small table through the (topic, key, id) index. Order is kept per
    (topic, key), exactly what `publish` locks: truck 7 on routing.events and route 7 on invoicing.events
    are unrelated.
    """

    event = models.OneToOneField(
        OutboxEvent, primary_key=True, on_delete=models.CASCADE, db_column="id", related_name="pending"
    )
    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=200)

    class Meta:
        db_table = "outbox_pending"
        ordering = ["event"]
        indexes = [
            models.Index(fields=["topic", "key", "event"], name="outbox_pending_topic_key_idx"),
            # Where each topic's queue starts: a claim skips a held topic's rows without reading them.
            models.Index(fields=["topic", "event"], name="outbox_pending_topic_id_idx"),
        ]

    def __str__(self) -> str:
        return f"pending {self.pk}"


class RelayProblem(models.Model):
    """A refusal only a person can fix (authorization, a missing topic, a policy), as the relay last saw it.

    The rows stay pending and are retried with backoff; this is how the admin and `/readyz` learn about it.
    A relay deletes the (code, topic) rows of a topic as soon as it gets a row of that topic confirmed.
    """

    code = models.CharField(max_length=64)
    topic = models.CharField(max_length=200)
    message = models.TextField()
    rows = models.PositiveIntegerField(help_text="Rows refused with this error, since it was first seen.")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["topic", "code"]
        constraints = [models.UniqueConstraint(fields=["code", "topic"], name="outbox_relayproblem_code_topic")]

    def __str__(self) -> str:
        return f"{self.code} on {self.topic}"


class BrokerMark(models.Model):
    """Evidence of what a Kafka cluster acknowledged, to notice when it forgets (see apps.outbox.relay.broker_memory).

    Per partition: the highest offset the relay saw acknowledged, the event stored there, and the cluster's id.
    Written by the relay (only ever upwards, at most once a check interval per partition and relay), read by its
    periodic check, deleted when the check re-queued what a forgetful cluster lost.
    """

    topic = models.CharField(max_length=200, help_text="As on the cluster (KAFKA_TOPIC_PREFIX included).")
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    event_id = models.UUIDField()
    cluster_id = models.CharField(max_length=100, blank=True)
    marked_at = models.DateTimeField()

    class Meta:
        ordering = ["topic", "partition"]
        constraints = [
            models.UniqueConstraint(fields=["topic", "partition"], name="outbox_brokermark_topic_partition"),
        ]

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def ce_time(created_at: datetime) -> str:
    """RFC 3339 time in UTC with a `Z`, as the `ce_time` header carries it."""
    return created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloudevents_headers(
    *, event_id: str, source: str, event_type: str, time: str, traceparent: str
) -> list[tuple[str, str]]:
    """The envelope of one outbox row; shared by `OutboxEvent.headers` and the relay's hot path."""
    headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", event_id),
        ("ce_source", source),
        ("ce_type", event_type),
        ("ce_time", time),
        ("content-type", "application/json"),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent))
    return headers
