"""Write side of the consumers: apply an event through the inbox, record dead letters, replay, discard, purge.

Replay and the consumer agree on one rule for a key's order: while a key has an unresolved head dead letter,
later messages of that key are parked behind it; resolving the head (replay or discard) runs the parked ones
in order, and the first that fails becomes the new head. Both sides take the same per-(group, key) advisory
lock, so a message cannot be parked behind a head that a replay is resolving at the same moment.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import traceback as tb
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone
from pydantic import ValidationError

from apps.common.api import ApplicationError
from apps.common.tracing import trace_context
from apps.consumers import registry
from apps.consumers.decoding import SKIP, Decoded, DecodeFailure, RawMessage, decode, identity
from apps.consumers.models import DeadLetter, DeadLetterReplay, InboxEntry, encode_headers

Action = DeadLetterReplay.Action
Outcome = DeadLetterReplay.Outcome

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
            reason=reason, exception_class=f"{kind.__module__}.{kind.__qualname__}", message=str(error),
            traceback="".join(tb.format_exception(error)), handler=handler,
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(exception_class=self.exception_class, handler=self.handler, message=self.message)


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
    with trace_context(meta.traceparent):
        decoded.registration.handler(decoded.event, meta)
    return True


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


def inbox_purge(*, older_than: timedelta | None = None, batch_size: int = 10_000) -> int:
    """Delete inbox rows past retention, in short transactions; returns how many were deleted.

    Retention must exceed how far back a topic can ever be re-read, or an old event could apply twice.
    """
    cutoff = timezone.now() - (older_than or timedelta(days=settings.CONSUMER_INBOX_RETENTION_DAYS))
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(InboxEntry.objects.filter(processed_at__lt=cutoff).values_list("id", flat=True)[:batch_size])
            if not ids:
                return deleted
            deleted += InboxEntry.objects.filter(id__in=ids).delete()[0]


# --- per-key order ----------------------------------------------------------------------------------------


def lock_keys(*, group: str, keys: list[str]) -> None:
    """Serialise the consumer and replays on these (group, key)s until the transaction ends."""
    with connection.cursor() as cursor:
        for lock_id in sorted({_lock_id(group, key) for key in keys}):
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


def _lock_id(group: str, key: str) -> int:
    digest = hashlib.blake2b(f"consumers\x00{group}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def blocking_heads(*, group: str, keys: list[str]) -> dict[str, int]:
    """key -> id of the unresolved head dead letter that later messages of that key must wait behind."""
    rows = (
        DeadLetter.objects.filter(group=group, key__in=keys, status__in=DeadLetter.UNRESOLVED, blocked_by__isnull=True)
        .order_by("key", "id")
        .values_list("key", "id")
    )
    heads: dict[str, int] = {}
    for key, head_id in rows:
        heads.setdefault(key, head_id)
    return heads


# --- recording dead letters -------------------------------------------------------------------------------


@transaction.atomic
def deadletter_record(
    *, group: str, raw: RawMessage, failure: Failure, attempts: int, first_failed_at: datetime | None = None,
    blocked_by_id: int | None = None,
) -> DeadLetter:
    """Put a message in the ledger (once per message and group: a redelivered one updates its row)."""
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
    dead_letter.save()
    return dead_letter


def parked_failure(head_id: int) -> Failure:
    return Failure(
        reason=DeadLetter.Reason.PARKED, exception_class="", message=f"parked behind dead letter #{head_id}"
    )


def _set_failure(dead_letter: DeadLetter, failure: Failure, *, attempts: int, at: datetime) -> None:
    dead_letter.reason = failure.reason
    dead_letter.handler = failure.handler[:300]
    dead_letter.exception_class = failure.exception_class[:300]
    dead_letter.error_message = failure.message
    dead_letter.traceback = failure.traceback
    # Parked messages share one failure group: their own cause is unknown until they run.
    dead_letter.fingerprint = fingerprint(exception_class="", handler="", message="parked") if (
        failure.reason == DeadLetter.Reason.PARKED
    ) else failure.fingerprint
    dead_letter.attempts = attempts
    dead_letter.last_failed_at = at


# --- replay, edit, discard --------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    dead_letter: DeadLetter
    outcome: str
    error: str = ""
    released: list[int] = field(default_factory=list)
    new_head: int | None = None


def deadletter_replay(*, dead_letter_id: int, actor: AbstractBaseUser | None = None) -> ReplayResult:
    """Re-run the dead letter's group handler on the stored message, through the inbox.

    Success: replayed, and the messages parked behind it run in order. Failure: stays pending with
    attempts + 1 and the new error; nothing is retried automatically.
    """
    with transaction.atomic():
        dead_letter = _lock(dead_letter_id)
        _check_replayable(dead_letter, enforce_cap=True)
        return _replay_locked(dead_letter, actor=actor, action=Action.REPLAY)


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
        dead_letter.save(update_fields=["status", "resolved_at"])
        _history(dead_letter, action=Action.DISCARD, outcome=Outcome.DISCARDED, actor=actor, reason=reason.strip())
        result = ReplayResult(dead_letter=dead_letter, outcome=Outcome.DISCARDED)
        if dead_letter.blocked_by_id is None:
            result.released, result.new_head = _release_followers(dead_letter, actor=actor)
        return result


@transaction.atomic
def deadletter_queue_replay(*, dead_letter_ids: list[int], actor: AbstractBaseUser | None) -> list[int]:
    """Mark replayable dead letters `replaying` and hand them to a Celery task after commit; returns their ids."""
    from apps.consumers.tasks import replay_dead_letters

    ids = list(
        DeadLetter.objects.select_for_update()
        .filter(id__in=dead_letter_ids, status=DeadLetter.Status.PENDING, blocked_by__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    DeadLetter.objects.filter(id__in=ids).update(status=DeadLetter.Status.REPLAYING)
    now = timezone.now()
    DeadLetterReplay.objects.bulk_create(
        DeadLetterReplay(dead_letter_id=i, action=Action.QUEUE, outcome=Outcome.QUEUED, actor=actor, at=now)
        for i in ids
    )
    actor_id = actor.pk if actor else None
    chunk = settings.CONSUMER_REPLAY_TASK_CHUNK
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        transaction.on_commit(lambda part=part: replay_dead_letters.delay(part, actor_id))
    return ids


def _lock(dead_letter_id: int) -> DeadLetter:
    """The per-key lock first (same order as the consumer), then the row."""
    try:
        group, key = DeadLetter.objects.values_list("group", "key").get(pk=dead_letter_id)
    except DeadLetter.DoesNotExist:
        raise ApplicationError(f"dead letter #{dead_letter_id} does not exist") from None
    if key is not None:
        lock_keys(group=group, keys=[key])
    return DeadLetter.objects.select_for_update().get(pk=dead_letter_id)


def _check_replayable(dead_letter: DeadLetter, *, enforce_cap: bool) -> None:
    if not dead_letter.is_unresolved:
        raise ApplicationError(f"dead letter #{dead_letter.pk} is already {dead_letter.status}")
    if dead_letter.blocked_by_id is not None:
        raise ApplicationError(
            f"dead letter #{dead_letter.pk} is parked behind #{dead_letter.blocked_by_id}: "
            "replay or discard that one first, its key's order depends on it"
        )
    failed = dead_letter.history.filter(
        action__in=[Action.REPLAY, Action.EDIT_AND_REPLAY], outcome=Outcome.FAILED
    ).count()
    if enforce_cap and failed >= settings.CONSUMER_REPLAY_MAX_ATTEMPTS:
        raise ApplicationError(
            f"dead letter #{dead_letter.pk} failed {failed} replays (the cap): fix its cause, edit or discard it"
        )


def _replay_locked(
    dead_letter: DeadLetter, *, actor: AbstractBaseUser | None, action: str, payload_diff: str = ""
) -> ReplayResult:
    try:
        applied = _apply_stored(dead_letter)
    except Exception as error:  # noqa: BLE001 - any failure is recorded on the dead letter
        failure = _record_failure(dead_letter, error)
        _history(dead_letter, action=action, outcome=Outcome.FAILED, actor=actor, error=failure.message,
                 payload_diff=payload_diff)
        return ReplayResult(dead_letter=dead_letter, outcome=Outcome.FAILED, error=failure.message)
    outcome = Outcome.APPLIED if applied else Outcome.DUPLICATE
    _resolve(dead_letter)
    _history(dead_letter, action=action, outcome=outcome, actor=actor, payload_diff=payload_diff)
    released, new_head = _release_followers(dead_letter, actor=actor)
    return ReplayResult(dead_letter=dead_letter, outcome=outcome, released=released, new_head=new_head)


def _release_followers(head: DeadLetter, *, actor: AbstractBaseUser | None) -> tuple[list[int], int | None]:
    """Run the messages parked behind `head` in order; the first failure becomes the key's new head."""
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
            failure = _record_failure(follower, error)
            _history(follower, action=Action.RELEASE, outcome=Outcome.FAILED, actor=actor, error=failure.message)
            rest = [f.pk for f in followers[index + 1 :]]
            DeadLetter.objects.filter(pk__in=rest).update(blocked_by=follower)
            return released, follower.pk
        _resolve(follower)
        _history(follower, action=Action.RELEASE, outcome=Outcome.APPLIED if applied else Outcome.DUPLICATE,
                 actor=actor)
        released.append(follower.pk)
    return released, None


def _apply_stored(dead_letter: DeadLetter) -> bool:
    """Decode the stored message and run it through the inbox of the dead letter's group (only that group)."""
    raw = RawMessage(
        topic=dead_letter.topic, partition=dead_letter.partition, offset=dead_letter.offset, key=dead_letter.key,
        value=bytes(dead_letter.value), headers=dead_letter.header_pairs(),
    )
    decoded = decode(raw, group=dead_letter.group)
    if decoded is SKIP:
        raise DecodeFailure(DeadLetter.Reason.UNKNOWN_TYPE, f"{dead_letter.group} no longer handles {dead_letter.event_type}")
    assert isinstance(decoded, Decoded)
    return inbox_apply(decoded=decoded)


def _record_failure(dead_letter: DeadLetter, error: Exception) -> Failure:
    registration = registry.handler_for(dead_letter.group, dead_letter.event_type)
    failure = Failure.from_exception(error, handler=registration.name if registration else "")
    _set_failure(dead_letter, failure, attempts=dead_letter.attempts + 1, at=timezone.now())
    dead_letter.status = DeadLetter.Status.PENDING
    dead_letter.save()
    return failure


def _resolve(dead_letter: DeadLetter) -> None:
    dead_letter.status = DeadLetter.Status.REPLAYED
    dead_letter.resolved_at = timezone.now()
    dead_letter.save(update_fields=["status", "resolved_at"])


def _history(dead_letter: DeadLetter, *, action: str, outcome: str, actor: AbstractBaseUser | None, **fields: str) -> None:
    DeadLetterReplay.objects.create(
        dead_letter=dead_letter, action=action, outcome=outcome, actor=actor, at=timezone.now(), **fields
    )


def payload_json(dead_letter: DeadLetter) -> Any:
    """The decoded payload for display, or None when the value is not JSON."""
    try:
        return json.loads(bytes(dead_letter.value))
    except ValueError:
        return None
