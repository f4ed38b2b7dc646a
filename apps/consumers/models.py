"""The consumer side's tables: the inbox that makes redelivery a no-op, and the dead-letter ledger with its history.

A Kafka key or header value is anyone's bytes (a Java integer key starts with NUL): the ledger stores them as
bytes (`key` is bytea, header values base64 in JSON) and renders them as text only for people (`bytes_text`).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q


class InboxEntry(models.Model):
    """One row per event a group has applied; inserted in the handler's transaction, so a redelivery is a no-op."""

    group = models.CharField(max_length=100)
    event_id = models.UUIDField()
    processed_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name_plural = "inbox entries"
        constraints = [models.UniqueConstraint(fields=["group", "event_id"], name="consumers_inbox_group_event_uniq")]

    def __str__(self) -> str:
        return f"{self.group} {self.event_id}"


class DeadLetter(models.Model):
    """A message a group could not apply, kept byte for byte until someone replays or discards it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying automatically"
        REPLAYING = "replaying", "Replaying"
        REPLAYED = "replayed", "Replayed"
        DISCARDED = "discarded", "Discarded"

    class Reason(models.TextChoices):
        NOT_JSON = "not_json", "Value is not JSON"
        MISSING_HEADERS = "missing_headers", "Missing or invalid CloudEvents headers"
        UNKNOWN_TYPE = "unknown_type", "Unknown event type version"
        INVALID_PAYLOAD = "invalid_payload", "Payload invalid against the event schema"
        NON_RETRYABLE = "non_retryable", "Handler refused it (not retryable)"
        HANDLER_ERROR = "handler_error", "Handler failed after retries"
        PARKED = "parked", "Parked behind an earlier failure of its aggregate"

    UNRESOLVED = (Status.PENDING, Status.RETRYING, Status.REPLAYING)

    group = models.CharField(max_length=100)
    topic = models.CharField(max_length=200)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    key = models.BinaryField(null=True, blank=True, help_text="The Kafka key exactly as received (any bytes).")
    scope = models.BinaryField(
        null=True, blank=True,
        help_text="The ordering scope: the aggregate the event changes (`route:12`), or the key for a message that "
                  "cannot be decoded. Later messages of the same scope park behind an unresolved dead letter.",
    )
    value = models.BinaryField(help_text="The Kafka value exactly as received (or as last edited).")
    headers = models.JSONField(
        default=list, help_text="All Kafka headers, in order: [{key, value_b64}] (see encode_headers)."
    )
    event_id = models.UUIDField(null=True, blank=True)
    digest = models.BinaryField(
        max_length=32, null=True, blank=True, editable=False,
        help_text="SHA-256 of key, value and headers as received: how a message without a readable event id is known.",
    )
    event_type = models.CharField(max_length=200, blank=True)
    event_version = models.PositiveIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    handler = models.CharField(max_length=300, blank=True)
    exception_class = models.CharField(max_length=300, blank=True)
    error_message = models.TextField(blank=True)
    fix_label = models.CharField(max_length=200, blank=True, help_text="What a person can do about the failure.")
    fix_url = models.CharField(max_length=500, blank=True, help_text="The page of this site where they do it.")
    traceback = models.TextField(blank=True)
    fingerprint = models.CharField(
        max_length=16, db_index=True, help_text="Failure group: exception, handler, message."
    )
    attempts = models.PositiveIntegerField(default=0)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Automatic retries (status `retrying`): when the next one is due, and how many ran.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    auto_retries = models.PositiveIntegerField(default=0)
    # Background replay (status `replaying`): when it was last queued (NULL: its task could not be sent) and when
    # a task started on it (NULL: still waiting in the Celery queue). The stale sweep judges by both.
    replay_queued_at = models.DateTimeField(null=True, blank=True)
    replay_started_at = models.DateTimeField(null=True, blank=True)
    # Per-aggregate order: a parked message points at the head failure of its scope and waits for it.
    blocked_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="parked"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("replay_deadletter", "Can replay dead letters"),
            ("discard_deadletter", "Can discard dead letters"),
            ("edit_deadletter", "Can edit a dead letter's payload and replay it"),
        ]
        # One row per message and group, the message known by what it is (its event id, else its bytes), never by
        # its place: a rebuilt broker numbers offsets from zero again, and a re-published event lands elsewhere.
        constraints = [
            models.UniqueConstraint(
                fields=["group", "event_id"], condition=Q(event_id__isnull=False),
                name="consumers_deadletter_event_uniq",
            ),
            models.UniqueConstraint(
                fields=["group", "digest"], condition=Q(event_id__isnull=True), name="consumers_deadletter_bytes_uniq"
            ),
        ]
        indexes = [
            # What the releases before scopes asked once per batch ("is this key blocked?"); drop it once none runs.
            models.Index(
                fields=["group", "key", "id"], name="deadletter_unresolved_key_idx",
                condition=Q(status__in=["pending", "retrying", "replaying"]),
            ),
            # The consumer asks "is this scope blocked?" once per batch: only unresolved rows matter.
            models.Index(
                fields=["group", "scope", "id"], name="deadletter_unresolved_scope",
                condition=Q(status__in=["pending", "retrying", "replaying"]),
            ),
            # The retry sweep asks "which retries are due?".
            models.Index(fields=["next_attempt_at"], name="deadletter_retry_due_idx", condition=Q(status="retrying")),
            models.Index(fields=["status", "first_failed_at"], name="deadletter_status_age_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.group} {self.event_type or self.reason} ({self.status})"

    @property
    def is_unresolved(self) -> bool:
        return self.status in self.UNRESOLVED

    def header_pairs(self) -> list[tuple[str, bytes | None]]:
        return decode_headers(self.headers)

    def key_bytes(self) -> bytes | None:
        return bytes(self.key) if self.key is not None else None

    def scope_bytes(self) -> bytes | None:
        return bytes(self.scope) if self.scope is not None else None

    def key_text(self) -> str | None:
        """The key for people: UTF-8 text, other bytes as \\xNN (see `bytes_text`)."""
        key = self.key_bytes()
        return bytes_text(key) if key is not None else None

    def value_text(self) -> str:
        return bytes(self.value).decode("utf-8", errors="replace")

    def pretty_payload(self) -> str:
        """The value as indented JSON when it is JSON, else as text."""
        text = self.value_text()
        try:
            return json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            return text


class DeadLetterReplay(models.Model):
    """History of a dead letter: every replay, release, edit and discard, who did it and how it ended."""

    class Action(models.TextChoices):
        REPLAY = "replay", "Replay"
        EDIT_AND_REPLAY = "edit_and_replay", "Edit and replay"
        RELEASE = "release", "Released after its head was resolved"
        AUTO_RETRY = "auto_retry", "Automatic retry"
        QUEUE = "queue", "Queued for background replay"
        DISCARD = "discard", "Discard"
        EDIT_PROPOSED = "edit_proposed", "Edit proposed (billing fields: awaits approval)"
        EDIT_REJECTED = "edit_rejected", "Edit rejected"

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        DUPLICATE = "duplicate", "Already applied (inbox)"
        FAILED = "failed", "Failed"
        QUEUED = "queued", "Queued"
        REFUSED = "refused", "Refused (replay cap)"
        DISCARDED = "discarded", "Discarded"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting finance's approval"
        REJECTED = "rejected", "Rejected"

    dead_letter = models.ForeignKey(DeadLetter, on_delete=models.CASCADE, related_name="history")
    action = models.CharField(max_length=20, choices=Action.choices)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_name = models.CharField(
        max_length=150, blank=True, db_default="",
        help_text="Where the action came from outside the site: "
                  "e.g. `manage.py replay_dead_letters (OS account alice)`.",
    )
    at = models.DateTimeField()
    error = models.TextField(blank=True)
    reason = models.TextField(blank=True, help_text="Why it was discarded.")
    payload_diff = models.TextField(blank=True, help_text="Unified diff of an edited payload.")

    class Meta:
        ordering = ["id"]
        verbose_name = "dead letter history entry"
        verbose_name_plural = "dead letter history"

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.get_outcome_display()}"

    def who(self) -> str | None:
        """The user, where the action came from outside the site, or both (the replay command)."""
        names = [self.actor.get_username()] if self.actor else []
        names += [self.actor_name] if self.actor_name else []
        return " via ".join(names) or None


class DeadLetterEdit(models.Model):
    """A person's new payload for a dead letter. One that changes a field its event type guards (`approval_fields`:
    who or what is billed) is applied only once a second person with `approve_billing_edit` approves it; any other
    is applied at once. Documents issued from an edited message point here (e.g. `Invoice.source_edit`)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting approval"
        APPLIED = "applied", "Applied"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded (a newer edit, or the letter was resolved)"

    dead_letter = models.ForeignKey(DeadLetter, on_delete=models.PROTECT, related_name="edits")
    payload = models.BinaryField(help_text="The edited value, as it is (or would be) replayed.")
    payload_diff = models.TextField(help_text="Unified diff from the value before the edit.")
    guarded_fields = models.JSONField(
        default=list, help_text="The guarded fields the edit changes; empty: nothing billed changed, no approval."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField()
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The second person (finance) who approved a guarded edit; empty for an edit that needed none.",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rejected_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it was rejected.")

    class Meta:
        ordering = ["-id"]
        permissions = [("approve_billing_edit", "Can approve an edit of a dead letter's billing or identity fields")]
        constraints = [
            models.UniqueConstraint(
                fields=["dead_letter"], condition=Q(status="pending"), name="consumers_one_pending_edit_per_letter"
            ),
        ]

    def __str__(self) -> str:
        return f"edit #{self.pk} of dead letter #{self.dead_letter_id} ({self.status})"

    @property
    def needs_approval(self) -> bool:
        return bool(self.guarded_fields)


class ReplayRequest(models.Model):
    """Who asked for a background replay, written by the authenticated caller that queued it. The Celery task
    carries only this row's id and reads the actor here: a task message (anyone's who can write to the broker)
    names no one, and replays only dead letters the request was made for."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="Empty: the stale-replay sweep, no person.")
    requested_at = models.DateTimeField()
    dead_letter_ids = models.JSONField(default=list)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"replay request #{self.pk} ({len(self.dead_letter_ids)} dead letters)"


def encode_headers(headers: list[tuple[str, bytes | None]] | None) -> list[dict[str, Any]]:
    """Kafka headers as JSON, losslessly: every value base64 (a NUL, invalid UTF-8, anything), the name as text.

    PostgreSQL's jsonb refuses NUL even escaped, so a name that holds one (or unpaired surrogates) is stored as
    `key_b64` instead.
    """
    encoded: list[dict[str, Any]] = []
    for name, raw in headers or []:
        entry: dict[str, Any] = {"key": name} if _json_safe(name) else {
            "key_b64": base64.b64encode(name.encode("utf-8", "surrogatepass")).decode()
        }
        entry["value_b64"] = base64.b64encode(raw).decode() if raw is not None else None
        encoded.append(entry)
    return encoded


def decode_headers(encoded: list[dict[str, Any]]) -> list[tuple[str, bytes | None]]:
    pairs: list[tuple[str, bytes | None]] = []
    for header in encoded:
        if "key" in header:
            name = header["key"]
        else:
            name = base64.b64decode(header["key_b64"]).decode("utf-8", "surrogatepass")
        value = header.get("value_b64")
        pairs.append((name, base64.b64decode(value) if value is not None else None))
    return pairs


def _json_safe(text: str) -> bool:
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


def bytes_text(raw: bytes) -> str:
    """Bytes for people, unambiguously: printable UTF-8 as is, a backslash as \\\\, every other byte as \\xNN.

    `text_bytes` reverses it, so what the admin shows can be pasted into a search.
    """
    parts: list[str] = []
    for char in raw.decode("utf-8", "surrogateescape"):
        if "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8
            parts.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char == "\\":
            parts.append("\\\\")
        elif char.isprintable():
            parts.append(char)
        else:
            parts.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(parts)


def text_bytes(text: str) -> bytes:
    """The bytes a `bytes_text` rendering stands for; a plain key is its UTF-8. A lone backslash is itself."""
    out = bytearray()
    index = 0
    while index < len(text):
        if text.startswith("\\\\", index):
            out += b"\\"
            index += 2
        elif text.startswith("\\x", index) and _is_hex(text[index + 2 : index + 4]):
            out.append(int(text[index + 2 : index + 4], 16))
            index += 4
        else:
            out += text[index].encode("utf-8", "surrogatepass")
            index += 1
    return bytes(out)


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(char in "0123456789abcdefABCDEF" for char in pair)
