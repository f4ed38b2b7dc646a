"""Write side of the consumers: apply an event through the inbox, record dead letters, retry them automatically,
replay, discard, purge.

Replay, automatic retries and the consumer agree on one rule for a key's order: while a key (its exact bytes)
has an unresolved head dead letter (pending, retrying, replaying), later messages of that key are parked behind
it; resolving the head (replay, automatic retry or discard) runs the parked ones in order, and the first that
fails becomes the new head. All sides take the same per-(group, key) advisory lock, so a message cannot be
parked behind a head that is being resolved at the same moment.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import time
import traceback as tb
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from apps.common.errors import ApplicationError
from apps.common.tracing import batch_spans, log_context, otel_enabled, trace_context
from apps.consumers import registry
from apps.consumers.decoding import SKIP, Decoded, DecodeFailure, RawMessage, decode, identity
from apps.consumers.models import DeadLetter, DeadLetterReplay, InboxEntry, bytes_text, encode_headers, safe_text

Action = DeadLetterReplay.Action
Outcome = DeadLetterReplay.Outcome
_REPLAYABLE = (DeadLetter.Status.PENDING, DeadLetter.Status.RETRYING)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_HEX = re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*[0-9])[0-9a-f]{8,})\b", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")


# --- failures ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Why a message could not be applied, in the shape the ledger stores."""

    reason: str
    exception_class: str
    message: str
    traceback: str = ""
    handler: str = ""
    fix: registry.Fix | None = None

    @classmethod
    def from_exception(cls, error: BaseException, *, handler: str = "") -> Failure:
        if isinstance(error, DecodeFailure):
            reason = error.reason
        elif isinstance(error, registry.NonRetryableError):
            reason = DeadLetter.Reason.NON_RETRYABLE
        else:
            reason = DeadLetter.Reason.HANDLER_ERROR
        kind = type(error)
        return cls(
            reason=reason, exception_class=f"{kind.__module__}.{kind.__qualname__}", message=_describe(error),
            traceback=_traceback(error), handler=handler, fix=getattr(error, "fix", None),
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(exception_class=self.exception_class, handler=self.handler, message=self.message)


def _describe(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails is still a failure to record
        return f"<{type(error).__name__} with an unprintable message>"


def _traceback(error: BaseException) -> str:
    try:
        return "".join(tb.format_exception(error))
    except Exception:  # noqa: BLE001 - as above
        return ""


def fingerprint(*, exception_class: str, handler: str, message: str) -> str:
    """Failure group: the same exception in the same handler with the same message up to ids and numbers."""
    normalised = _DIGITS.sub("<n>", _HEX.sub("<hex>", _UUID.sub("<uuid>", message[:500])))
    return hashlib.sha256(f"{exception_class}\x00{handler}\x00{normalised}".encode()).hexdigest()[:16]


# --- the inbox --------------------------------------------------------------------------------------------


@transaction.atomic
def inbox_apply(*, decoded: Decoded) -> bool:
    """Run the group's handler for `decoded` unless the group already applied the event; True if it ran.

    Runs in a savepoint of the caller's transaction, so a failing handler takes its inbox row with it.
    """
    meta = decoded.meta
    if not _inbox_insert(group=meta.group, event_id=meta.event_id):
        return False
    with _process_span(meta), log_context(**log_ids(decoded.event)):
        decoded.registration.handler(decoded.event, meta)
    return True


def _process_span(meta: registry.EventMeta) -> AbstractContextManager[str]:
    return trace_context(
        meta.traceparent, event_id=str(meta.event_id), name=f"process {meta.topic}", kind=SpanKind.CONSUMER,
        attributes=messaging_attributes(meta) if otel_enabled() else None,
    )


def messaging_attributes(meta: registry.EventMeta) -> dict[str, str | int]:
    """OpenTelemetry messaging attributes of a consumed message (the key shown as text, never trusted)."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.destination.name": meta.topic, "messaging.consumer.group.name": meta.group,
        "messaging.message.id": str(meta.event_id), "messaging.destination.partition.id": str(meta.partition),
        "messaging.kafka.offset": meta.offset,
    }
    if meta.key is not None:
        attributes["messaging.kafka.message.key"] = bytes_text(meta.key)
    return attributes


def log_ids(event: object) -> dict[str, object]:
    """The route and invoice an event is about, for the log lines of its handling."""
    return {name: getattr(event, name) for name in ("route_id", "invoice_id") if hasattr(event, name)}


def _inbox_insert(*, group: str, event_id: Any) -> bool:
    opts = InboxEntry._meta
    qn = connection.ops.quote_name
    params = [
        group,
        opts.get_field("event_id").get_db_prep_value(event_id, connection),
        opts.get_field("processed_at").get_db_prep_value(timezone.now(), connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(opts.db_table)} ({qn('group')}, {qn('event_id')}, {qn('processed_at')}) "
            f"VALUES (%s, %s, %s) ON CONFLICT ({qn('group')}, {qn('event_id')}) DO NOTHING",
            params,
        )
        return cursor.rowcount == 1


@transaction.atomic
def inbox_apply_many(*, decoded: Sequence[Decoded]) -> list[bool]:
    """Apply a run of events of one registration through its batch handler: one inbox statement, one call.

    All or nothing, in a savepoint of the caller's transaction: if the batch handler raises, no inbox row and
    no effect of the run remain. Returns, per event, True if it was new (handed to the batch handler) and False
    for a duplicate (applied before, or an earlier copy in this run), as `inbox_apply` would one by one.
    """
    registration = decoded[0].registration
    if registration.batch_handler is None or any(item.registration is not registration for item in decoded):
        raise ValueError("inbox_apply_many needs events of one registration that has a batch handler")
    fresh = _inbox_insert_many(group=decoded[0].meta.group, event_ids=[item.meta.event_id for item in decoded])
    applied: list[bool] = []
    for item in decoded:
        applied.append(item.meta.event_id in fresh)
        fresh.discard(item.meta.event_id)  # a second copy of an event in the same run is a duplicate
    new = [(item.event, item.meta) for item, is_new in zip(decoded, applied, strict=True) if is_new]
    if new:
        spans = [(meta.traceparent, f"process {meta.topic}", messaging_attributes(meta)) for _, meta in new] \
            if otel_enabled() else []
        with batch_spans(spans) as parents:
            if parents is not None:  # each message's work continues under its own process span
                new = [(event, replace(meta, traceparent=parent)) for (event, meta), parent in zip(new, parents, strict=True)]
            registration.batch_handler(new)
    return applied


def _inbox_insert_many(*, group: str, event_ids: list[Any]) -> set[Any]:
    """Insert the inbox rows of `event_ids` in one statement; returns the ids that were not there yet."""
    opts = InboxEntry._meta
    qn = connection.ops.quote_name
    id_field = opts.get_field("event_id")
    processed_at = opts.get_field("processed_at").get_db_prep_value(timezone.now(), connection)
    rows = [(group, id_field.get_db_prep_value(event_id, connection), processed_at) for event_id in event_ids]
    with connection.cursor() as cursor:
        # Rows are inserted in the VALUES order, so of two copies of an event in the run the first one wins.
        cursor.execute(
            f"INSERT INTO {qn(opts.db_table)} ({qn('group')}, {qn('event_id')}, {qn('processed_at')}) "
            f"VALUES {', '.join(['(%s, %s, %s)'] * len(rows))} "
            f"ON CONFLICT ({qn('group')}, {qn('event_id')}) DO NOTHING RETURNING {qn('event_id')}",
            [value for row in rows for value in row],
        )
        return {id_field.to_python(row[0]) for row in cursor.fetchall()}


def inbox_purge(
    *, older_than: timedelta | None = None, batch_size: int = 10_000, on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete inbox rows past retention, in short transactions; returns how many were deleted.
    `on_batch(deleted)` is called after each committed batch (a command's progress line).

    Retention must exceed how far back a topic can ever be re-read, or an old event could apply twice.
    """
    cutoff = timezone.now() - (older_than or timedelta(days=settings.CONSUMER_INBOX_RETENTION_DAYS))
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(InboxEntry.objects.filter(processed_at__lt=cutoff).values_list("id", flat=True)[:batch_size])
            if not ids:
                return deleted
            batch = InboxEntry.objects.filter(id__in=ids).delete()[0]
        deleted += batch
        if on_batch is not None:
            on_batch(batch)


# --- per-key order ----------------------------------------------------------------------------------------


def lock_keys(*, group: str, keys: list[bytes]) -> None:
    """Serialise the consumer and replays on these (group, key)s until the transaction ends."""
    with connection.cursor() as cursor:
        for lock_id in sorted({_lock_id(group, key) for key in keys}):
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


def _lock_id(group: str, key: bytes) -> int:
    digest = hashlib.blake2b(b"consumers\x00" + group.encode() + b"\x00" + key, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def blocking_heads(*, group: str, keys: list[bytes]) -> dict[bytes, int]:
    """key -> id of the unresolved head dead letter that later messages of that key must wait behind.

    Keys are compared as bytes: two keys that only a lossy decoding would make equal are different keys.
    """
    rows = (
        DeadLetter.objects.filter(group=group, key__in=keys, status__in=DeadLetter.UNRESOLVED, blocked_by__isnull=True)
        .order_by("key", "id")
        .values_list("key", "id")
    )
    heads: dict[bytes, int] = {}
    for key, head_id in rows:
        heads.setdefault(bytes(key), head_id)
    return heads


def ledger_statuses(*, group: str, positions: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], str]:
    """(topic, partition, offset) -> status of the group's dead letter for that message, for those that have one.

    The consumer asks once per batch: on redelivery the ledger decides, not the handler (a discarded message
    never runs again; a replayed one is a duplicate; an unresolved one waits where it is).
    """
    offsets: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in positions:
        offsets.setdefault((topic, partition), []).append(offset)
    where = Q()
    for (topic, partition), wanted in offsets.items():
        where |= Q(topic=topic, partition=partition, offset__in=wanted)
    if not offsets:
        return {}
    rows = DeadLetter.objects.filter(where, group=group).values_list("topic", "partition", "offset", "status")
    return {(topic, partition, offset): status for topic, partition, offset, status in rows}


# --- recording dead letters -------------------------------------------------------------------------------


@transaction.atomic
def deadletter_record(
    *, group: str, raw: RawMessage, failure: Failure, attempts: int, first_failed_at: datetime | None = None,
    blocked_by_id: int | None = None, auto_retry: bool = False,
) -> DeadLetter:
    """Put a message in the ledger (once per message and group: a redelivered one updates its row).

    Key, value and header values are stored as the bytes they are; text columns get `safe_text`. If this still
    fails, the caller falls back to `deadletter_record_minimal`. `auto_retry`: a retryable failure the consumer
    gave up on in line becomes `retrying`, re-tried by `deadletter_retry_due` (when automatic retries are on).
    """
    now = timezone.now()
    existing = (
        DeadLetter.objects.select_for_update()
        .filter(group=group, topic=raw.topic, partition=raw.partition, offset=raw.offset)
        .first()
    )
    if existing:
        if existing.is_unresolved and existing.blocked_by_id is None and blocked_by_id is None:
            _set_failure(existing, failure, attempts=existing.attempts + attempts, at=now)
            existing.save()
        return existing
    ident = identity(raw)
    dead_letter = DeadLetter(
        group=group, topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key,
        value=raw.value or b"", headers=encode_headers(raw.headers), event_id=ident.event_id,
        event_type=ident.event_type, event_version=ident.event_version, attempts=0,
        first_failed_at=first_failed_at or now, blocked_by_id=blocked_by_id,
    )
    _set_failure(dead_letter, failure, attempts=attempts, at=now)
    if auto_retry and _retryable(failure) and blocked_by_id is None and settings.CONSUMER_AUTO_RETRY_MAX_ATTEMPTS > 0:
        dead_letter.status = DeadLetter.Status.RETRYING
        dead_letter.next_attempt_at = now + auto_retry_delay(0)
    dead_letter.save()
    return dead_letter


@transaction.atomic
def deadletter_record_minimal(
    *, group: str, raw: RawMessage, failure: Failure, error: BaseException, blocked_by_id: int | None = None,
) -> None:
    """The ledger row of last resort, when recording a failure in full failed: the raw bytes, the reason and
    why the full record failed, in columns nothing foreign can break (bytea, base64, ASCII). A row that
    already exists for the message wins (ON CONFLICT DO NOTHING): either way the message is in the ledger."""
    now = timezone.now()
    message = _ascii(
        f"{failure.message[:1000]}\n\n(the failure could not be recorded in full: "
        f"{type(error).__name__}: {_describe(error)[:500]})"
    )
    try:
        headers = encode_headers(raw.headers)
    except Exception:  # noqa: BLE001 - the value and key bytes are what must not be lost
        headers = []
    DeadLetter.objects.bulk_create([
        DeadLetter(
            group=group, topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key,
            value=raw.value or b"", headers=headers, reason=failure.reason, handler=_ascii(failure.handler)[:300],
            exception_class=_ascii(failure.exception_class)[:300], error_message=message,
            fingerprint=fingerprint(exception_class="", handler="", message="unrecorded"), attempts=1,
            first_failed_at=now, last_failed_at=now, blocked_by_id=blocked_by_id,
        )
    ], ignore_conflicts=True)


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode().replace("\x00", "\\x00")


def parked_failure(head_id: int) -> Failure:
    return Failure(
        reason=DeadLetter.Reason.PARKED, exception_class="", message=f"parked behind dead letter #{head_id}"
    )


def _set_failure(dead_letter: DeadLetter, failure: Failure, *, attempts: int, at: datetime) -> None:
    dead_letter.reason = failure.reason
    dead_letter.handler = safe_text(failure.handler)[:300]
    dead_letter.exception_class = safe_text(failure.exception_class)[:300]
    dead_letter.error_message = safe_text(failure.message)
    dead_letter.traceback = safe_text(failure.traceback)
    # Parked messages share one failure group: their own cause is unknown until they run.
    dead_letter.fingerprint = fingerprint(exception_class="", handler="", message="parked") if (
        failure.reason == DeadLetter.Reason.PARKED
    ) else failure.fingerprint
    dead_letter.attempts = attempts
    dead_letter.last_failed_at = at
    fix = failure.fix if failure.fix is not None and _is_site_path(failure.fix.url) else None
    dead_letter.fix_label = safe_text(fix.label)[:200] if fix else ""
    dead_letter.fix_url = fix.url[:500] if fix else ""


def _is_site_path(url: object) -> bool:
    """Only a path of this site becomes a link: never another host, a scheme like javascript:, or a NUL."""
    return isinstance(url, str) and url.startswith("/") and not url.startswith("//") and url.isprintable() \
        and "\\" not in url and len(url) <= 500


# --- automatic retries ---------------------------------------------------------------------------------------


def auto_retry_delay(retries_done: int) -> timedelta:
    """Delay before automatic retry number `retries_done + 1`: doubling from the initial delay, capped."""
    initial = settings.CONSUMER_AUTO_RETRY_BACKOFF_INITIAL_S
    return timedelta(seconds=min(initial * 2 ** min(retries_done, 32), settings.CONSUMER_AUTO_RETRY_BACKOFF_MAX_S))


def _retryable(failure: Failure) -> bool:
    return failure.reason == DeadLetter.Reason.HANDLER_ERROR


def deadletter_retry_due(*, limit: int = 200, time_budget_s: float = 60.0) -> dict[str, int]:
    """Run the automatic retries that are due, the longest-waiting first, one transaction each (beat task).

    Stops starting new ones after `time_budget_s`; the rest are due at the next sweep. Returns outcome counts.
    """
    started = time.monotonic()
    due = list(
        DeadLetter.objects.filter(
            status=DeadLetter.Status.RETRYING, next_attempt_at__lte=timezone.now(), blocked_by__isnull=True
        ).order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit]
    )
    outcomes: dict[str, int] = {}
    for dead_letter_id in due:
        if time.monotonic() - started >= time_budget_s:
            break
        outcome = deadletter_auto_retry(dead_letter_id=dead_letter_id).outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def deadletter_auto_retry(*, dead_letter_id: int) -> ReplayResult:
    """One automatic retry of a `retrying` dead letter, if still due.

    Success: replayed, and the messages parked behind it run in order (as for a replay). Failure: the next
    retry is scheduled (the delay doubles), or after the last one (CONSUMER_AUTO_RETRY_MAX_ATTEMPTS) it becomes
    a pending dead letter, as does a failure retrying cannot help (non-retryable, undecodable).
    """
    with transaction.atomic():
        dead_letter = _lock(dead_letter_id)
        now = timezone.now()
        if dead_letter.status != DeadLetter.Status.RETRYING or dead_letter.blocked_by_id is not None or (
            dead_letter.next_attempt_at and dead_letter.next_attempt_at > now
        ):
            return ReplayResult(dead_letter=dead_letter, outcome="skipped")
        try:
            applied = _apply_stored(dead_letter)
        except Exception as error:  # noqa: BLE001 - recorded; retried later or left to a person
            dead_letter.auto_retries += 1
            failure = _record_failure(dead_letter, error)
            _history(dead_letter, action=Action.AUTO_RETRY, outcome=Outcome.FAILED, actor=None, error=failure.message)
            return ReplayResult(dead_letter=dead_letter, outcome=Outcome.FAILED, error=failure.message)
        _resolve(dead_letter)
        outcome = Outcome.APPLIED if applied else Outcome.DUPLICATE
        _history(dead_letter, action=Action.AUTO_RETRY, outcome=outcome, actor=None)
        released, new_head = _release_followers(dead_letter, actor=None, auto_retry=True)
        return ReplayResult(dead_letter=dead_letter, outcome=outcome, released=released, new_head=new_head)


# --- replay, edit, discard --------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    dead_letter: DeadLetter
    outcome: str
    error: str = ""
    released: list[int] = field(default_factory=list)
    new_head: int | None = None


def deadletter_replay(
    *, dead_letter_id: int, actor: AbstractBaseUser | None = None, actor_name: str = ""
) -> ReplayResult:
    """Re-run the dead letter's group handler on the stored message, through the inbox.

    Success: replayed, and the messages parked behind it run in order. Failure: stays pending with
    attempts + 1 and the new error; nothing is retried automatically. `actor_name` says who acted when that
    is no user of this site (the replay command).
    """
    with transaction.atomic():
        dead_letter = _lock(dead_letter_id)
        _check_replayable(dead_letter, enforce_cap=True)
        return _replay_locked(dead_letter, actor=actor, action=Action.REPLAY, actor_name=actor_name)


def deadletter_edit_and_replay(
    *, dead_letter_id: int, actor: AbstractBaseUser | None, payload: str
) -> ReplayResult:
    """Replace the payload (validated against the event's schema; diff kept in the history), then replay."""
    with transaction.atomic():
        dead_letter = _lock(dead_letter_id)
        _check_replayable(dead_letter, enforce_cap=False)
        registration = registry.handler_for(dead_letter.group, dead_letter.event_type)
        if registration is None:
            raise ApplicationError(
                f"{dead_letter.group} has no handler for {dead_letter.event_type or 'an unreadable type'}; "
                "there is no schema to validate an edit against", field="payload",
            )
        try:
            event = registration.event_class.model_validate_json(payload)
        except ValidationError as error:
            raise ApplicationError(f"invalid against {dead_letter.event_type}: {error}", field="payload") from None
        before = dead_letter.pretty_payload()
        dead_letter.value = event.model_dump_json().encode()
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True), (dead_letter.pretty_payload() + "\n").splitlines(keepends=True),
                fromfile="received", tofile="edited",
            )
        )
        dead_letter.save(update_fields=["value"])
        return _replay_locked(dead_letter, actor=actor, action=Action.EDIT_AND_REPLAY, payload_diff=diff)


def deadletter_discard(*, dead_letter_id: int, actor: AbstractBaseUser | None, reason: str) -> ReplayResult:
    """Give up on a message, with a reason. Discarding a head releases its parked messages in order:
    the key's order was only held for this message, and nothing else is waiting on it."""
    if not reason.strip():
        raise ApplicationError("a reason is required to discard a dead letter", field="reason")
    with transaction.atomic():
        dead_letter = _lock(dead_letter_id)
        if not dead_letter.is_unresolved:
            raise ApplicationError(f"dead letter #{dead_letter.pk} is already {dead_letter.status}")
        dead_letter.status = DeadLetter.Status.DISCARDED
        dead_letter.resolved_at = timezone.now()
        dead_letter.next_attempt_at = None
        dead_letter.save(update_fields=["status", "resolved_at", "next_attempt_at"])
        _history(dead_letter, action=Action.DISCARD, outcome=Outcome.DISCARDED, actor=actor, reason=reason.strip())
        result = ReplayResult(dead_letter=dead_letter, outcome=Outcome.DISCARDED)
        if dead_letter.blocked_by_id is None:
            result.released, result.new_head = _release_followers(dead_letter, actor=actor)
        return result


@transaction.atomic
def deadletter_queue_replay(*, dead_letter_ids: list[int], actor: AbstractBaseUser | None) -> list[int]:
    """Mark replayable dead letters `replaying` and hand them to a Celery task after commit; returns their ids.

    Pending and retrying heads below the replay cap are replayable, as for a replay now (an operator's replay
    takes a retrying one off its schedule). If the task is lost, `deadletter_requeue_stale_replays` re-queues.
    """
    candidates = (
        DeadLetter.objects.select_for_update()
        .filter(id__in=dead_letter_ids, status__in=_REPLAYABLE, blocked_by__isnull=True)
        .order_by("id")
    )
    cap = settings.CONSUMER_REPLAY_MAX_ATTEMPTS
    ids = [dead_letter.pk for dead_letter in candidates if _failed_replays(dead_letter) < cap]
    DeadLetter.objects.filter(id__in=ids).update(
        status=DeadLetter.Status.REPLAYING, next_attempt_at=None, replay_queued_at=timezone.now()
    )
    _enqueue_replays(ids, actor=actor)
    return ids


def _enqueue_replays(ids: list[int], *, actor: AbstractBaseUser | None) -> None:
    from apps.consumers.tasks import replay_dead_letters

    now = timezone.now()
    DeadLetterReplay.objects.bulk_create(
        DeadLetterReplay(dead_letter_id=i, action=Action.QUEUE, outcome=Outcome.QUEUED, actor=actor, at=now)
        for i in ids
    )
    actor_id = actor.pk if actor else None
    chunk = settings.CONSUMER_REPLAY_TASK_CHUNK
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        # robust: a Celery broker down at commit must not fail the caller; the stale sweep re-queues.
        transaction.on_commit(lambda part=part: replay_dead_letters.delay(part, actor_id), robust=True)


def deadletter_replay_queued(*, dead_letter_id: int, actor: AbstractBaseUser | None = None) -> ReplayResult:
    """The background half of `deadletter_queue_replay`: replay a dead letter still `replaying`, under the same
    cap as a replay now. At the cap it goes back to `pending` (history: refused); one that is no longer
    `replaying` (handled meanwhile, or a second copy of the task) is skipped."""
    with transaction.atomic():
        dead_letter = _lock(dead_letter_id)
        if dead_letter.status != DeadLetter.Status.REPLAYING:
            return ReplayResult(dead_letter=dead_letter, outcome="skipped")
        failed = _failed_replays(dead_letter)
        if failed >= settings.CONSUMER_REPLAY_MAX_ATTEMPTS:
            error = f"not replayed: it failed {failed} replays (the cap); fix its cause, edit or discard it"
            dead_letter.status = DeadLetter.Status.PENDING
            dead_letter.save(update_fields=["status"])
            _history(dead_letter, action=Action.REPLAY, outcome=Outcome.REFUSED, actor=actor, error=error)
            return ReplayResult(dead_letter=dead_letter, outcome=Outcome.REFUSED, error=error)
        return _replay_locked(dead_letter, actor=actor, action=Action.REPLAY)


def deadletter_requeue_stale_replays(*, older_than: timedelta | None = None) -> int:
    """Beat: background replays still `replaying` after CONSUMER_REPLAY_STALE_MINUTES lost their task (never
    queued, or its worker died). Each counts as a failed replay: below the cap it is queued again, at the
    cap it goes back to `pending`. So nothing stays `replaying` for ever. Returns how many were re-queued."""
    cutoff = timezone.now() - (older_than or timedelta(minutes=settings.CONSUMER_REPLAY_STALE_MINUTES))
    with transaction.atomic():
        # A row a running replay holds is locked: that replay is alive, skip it.
        stale = list(
            DeadLetter.objects.select_for_update(skip_locked=True)
            .filter(Q(replay_queued_at__lt=cutoff) | Q(replay_queued_at__isnull=True), status=DeadLetter.Status.REPLAYING)
            .order_by("id")
        )
        requeue: list[int] = []
        for dead_letter in stale:
            _history(dead_letter, action=Action.REPLAY, outcome=Outcome.FAILED, actor=None,
                     error=f"the background replay did not finish within {settings.CONSUMER_REPLAY_STALE_MINUTES} "
                           "minutes (its task was lost or died)")
            if _failed_replays(dead_letter) >= settings.CONSUMER_REPLAY_MAX_ATTEMPTS:
                dead_letter.status = DeadLetter.Status.PENDING
                dead_letter.save(update_fields=["status"])
            else:
                requeue.append(dead_letter.pk)
        DeadLetter.objects.filter(pk__in=requeue).update(replay_queued_at=timezone.now())
        _enqueue_replays(requeue, actor=None)
    return len(requeue)


def _lock(dead_letter_id: int) -> DeadLetter:
    """The per-key lock first (same order as the consumer), then the row."""
    try:
        group, key = DeadLetter.objects.values_list("group", "key").get(pk=dead_letter_id)
    except DeadLetter.DoesNotExist:
        raise ApplicationError(f"dead letter #{dead_letter_id} does not exist") from None
    if key is not None:
        lock_keys(group=group, keys=[bytes(key)])
    return DeadLetter.objects.select_for_update().get(pk=dead_letter_id)


def _check_replayable(dead_letter: DeadLetter, *, enforce_cap: bool) -> None:
    if not dead_letter.is_unresolved:
        raise ApplicationError(f"dead letter #{dead_letter.pk} is already {dead_letter.status}")
    if dead_letter.blocked_by_id is not None:
        raise ApplicationError(
            f"dead letter #{dead_letter.pk} is parked behind #{dead_letter.blocked_by_id}: "
            "replay or discard that one first, its key's order depends on it"
        )
    failed = _failed_replays(dead_letter)
    if enforce_cap and failed >= settings.CONSUMER_REPLAY_MAX_ATTEMPTS:
        raise ApplicationError(
            f"dead letter #{dead_letter.pk} failed {failed} replays (the cap): fix its cause, edit or discard it"
        )


def _failed_replays(dead_letter: DeadLetter) -> int:
    """Failed replays so far (automatic retries and releases do not count): what the replay cap limits."""
    return dead_letter.history.filter(
        action__in=[Action.REPLAY, Action.EDIT_AND_REPLAY], outcome=Outcome.FAILED
    ).count()


def _replay_locked(
    dead_letter: DeadLetter, *, actor: AbstractBaseUser | None, action: str, payload_diff: str = "",
    actor_name: str = "",
) -> ReplayResult:
    try:
        applied = _apply_stored(dead_letter)
    except Exception as error:  # noqa: BLE001 - any failure is recorded on the dead letter
        failure = _record_failure(dead_letter, error)
        _history(dead_letter, action=action, outcome=Outcome.FAILED, actor=actor, error=failure.message,
                 payload_diff=payload_diff, actor_name=actor_name)
        return ReplayResult(dead_letter=dead_letter, outcome=Outcome.FAILED, error=failure.message)
    outcome = Outcome.APPLIED if applied else Outcome.DUPLICATE
    _resolve(dead_letter)
    _history(dead_letter, action=action, outcome=outcome, actor=actor, payload_diff=payload_diff,
             actor_name=actor_name)
    released, new_head = _release_followers(dead_letter, actor=actor, actor_name=actor_name)
    return ReplayResult(dead_letter=dead_letter, outcome=outcome, released=released, new_head=new_head)


def _release_followers(
    head: DeadLetter, *, actor: AbstractBaseUser | None, auto_retry: bool = False, actor_name: str = ""
) -> tuple[list[int], int | None]:
    """Run the messages parked behind `head` in order; the first failure becomes the key's new head.

    With `auto_retry` (the release of an automatic retry, nobody watching) a retryable failure of the new
    head is retried automatically too; after an operator's replay or discard it is pending, for them.
    """
    followers = list(
        DeadLetter.objects.select_for_update()
        .filter(blocked_by=head, status__in=DeadLetter.UNRESOLVED)
        .order_by("id")
    )
    released: list[int] = []
    for index, follower in enumerate(followers):
        try:
            applied = _apply_stored(follower)
        except Exception as error:  # noqa: BLE001 - recorded; the follower now blocks the rest
            follower.blocked_by = None
            if auto_retry:
                follower.status = DeadLetter.Status.RETRYING  # _record_failure keeps it so if retryable
            failure = _record_failure(follower, error)
            _history(follower, action=Action.RELEASE, outcome=Outcome.FAILED, actor=actor, error=failure.message,
                     actor_name=actor_name)
            rest = [f.pk for f in followers[index + 1 :]]
            DeadLetter.objects.filter(pk__in=rest).update(blocked_by=follower)
            return released, follower.pk
        _resolve(follower)
        _history(follower, action=Action.RELEASE, outcome=Outcome.APPLIED if applied else Outcome.DUPLICATE,
                 actor=actor, actor_name=actor_name)
        released.append(follower.pk)
    return released, None


def stored_message(dead_letter: DeadLetter) -> RawMessage:
    """The message as the consumer read it: the same key bytes and headers (the value as last edited)."""
    return RawMessage(
        topic=dead_letter.topic, partition=dead_letter.partition, offset=dead_letter.offset,
        key=dead_letter.key_bytes(), value=bytes(dead_letter.value), headers=dead_letter.header_pairs(),
    )


def _apply_stored(dead_letter: DeadLetter) -> bool:
    """Decode the stored message and run it through the inbox of the dead letter's group (only that group)."""
    decoded = decode(stored_message(dead_letter), group=dead_letter.group)
    if decoded is SKIP:
        raise DecodeFailure(DeadLetter.Reason.UNKNOWN_TYPE, f"{dead_letter.group} no longer handles {dead_letter.event_type}")
    assert isinstance(decoded, Decoded)
    return inbox_apply(decoded=decoded)


def _record_failure(dead_letter: DeadLetter, error: Exception) -> Failure:
    """A failed run of a stored message: attempts + 1 and the new error. A `retrying` one stays `retrying`
    (next try scheduled) while the error is retryable and automatic retries are left; otherwise, and for every
    other status, it becomes `pending`, for a person."""
    registration = registry.handler_for(dead_letter.group, dead_letter.event_type)
    failure = Failure.from_exception(error, handler=registration.name if registration else "")
    now = timezone.now()
    _set_failure(dead_letter, failure, attempts=dead_letter.attempts + 1, at=now)
    retrying = (
        dead_letter.status == DeadLetter.Status.RETRYING and _retryable(failure)
        and dead_letter.auto_retries < settings.CONSUMER_AUTO_RETRY_MAX_ATTEMPTS
    )
    dead_letter.status = DeadLetter.Status.RETRYING if retrying else DeadLetter.Status.PENDING
    dead_letter.next_attempt_at = now + auto_retry_delay(dead_letter.auto_retries) if retrying else None
    dead_letter.save()
    return failure


def _resolve(dead_letter: DeadLetter) -> None:
    dead_letter.status = DeadLetter.Status.REPLAYED
    dead_letter.resolved_at = timezone.now()
    dead_letter.next_attempt_at = None
    dead_letter.save(update_fields=["status", "resolved_at", "next_attempt_at"])


def _history(dead_letter: DeadLetter, *, action: str, outcome: str, actor: AbstractBaseUser | None, **fields: str) -> None:
    if "actor_name" in fields:
        fields["actor_name"] = safe_text(fields["actor_name"])[:150]
    DeadLetterReplay.objects.create(
        dead_letter=dead_letter, action=action, outcome=outcome, actor=actor, at=timezone.now(), **fields
    )


def payload_json(dead_letter: DeadLetter) -> Any:
    """The decoded payload for display, or None when the value is not JSON."""
    try:
        return json.loads(bytes(dead_letter.value))
    except ValueError:
        return None
