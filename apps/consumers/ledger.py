"""The dead-letter ledger's writes: a failure as the ledger stores it (`Failure`, its failure group), recording a
message that failed (in full, or minimally when that fails too), a failed re-run, a resolution and the history
of what was done; and what the ledger says about redelivered messages."""

from __future__ import annotations

import hashlib
import re
import traceback as tb
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.common.postgres import safe_text
from apps.common.redaction import INPUT_VALUE as _INPUT_VALUE
from apps.common.redaction import QUOTED as _QUOTED
from apps.consumers import registry
from apps.consumers.decoding import (
    DecodeFailure,
    Identity,
    MessageId,
    RawMessage,
    identity,
    message_digest,
    message_scope,
)
from apps.consumers.models import DeadLetter, DeadLetterEdit, DeadLetterReplay, encode_headers

Known = tuple[Identity, bytes | None]  # a message's identity and ordering scope, as its consumer decoded them

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_HEX = re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*[0-9])[0-9a-f]{8,})\b", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")
# The producer text messages echo (pydantic's input values, anything quoted) is `_INPUT_VALUE` and `_QUOTED`, the
# patterns that also keep it out of log lines and spans (apps.common.redaction).


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
    """Failure group: the same exception in the same handler with the same message up to ids, numbers and the
    input values it quotes. Messages echo producer text (`ce_specversion 'x'`, pydantic's input values): hashed as
    they are, N junk messages would make N groups, and N series in /metrics."""
    normalised = _QUOTED.sub("<value>", _INPUT_VALUE.sub("input_value=<value>, input_type=", message[:2000]))
    normalised = _DIGITS.sub("<n>", _HEX.sub("<hex>", _UUID.sub("<uuid>", normalised)))[:500]
    return hashlib.sha256(f"{exception_class}\x00{handler}\x00{normalised}".encode()).hexdigest()[:16]


# --- what the ledger holds --------------------------------------------------------------------------------


def ledger_statuses(*, group: str, message_ids: list[MessageId]) -> dict[MessageId, str]:
    """Message id (event id, or digest of a message without one; see `Identity.message_id`) -> status of the
    group's dead letter for that message, for those that have one.

    The consumer asks once per batch: on redelivery the ledger decides, not the handler (a discarded message
    never runs again; a replayed one is a duplicate; an unresolved one waits where it is), wherever the message
    now sits: a position names a place in one log, and logs get rebuilt.
    """
    if not message_ids:
        return {}
    event_ids = [message_id for message_id in message_ids if isinstance(message_id, uuid.UUID)]
    digests = [message_id for message_id in message_ids if isinstance(message_id, bytes)]
    rows = DeadLetter.objects.filter(
        Q(event_id__in=event_ids) | Q(event_id__isnull=True, digest__in=digests), group=group
    ).order_by().values_list("event_id", "digest", "status")
    return {event_id if event_id is not None else bytes(digest): status for event_id, digest, status in rows}


def ledger_row(*, group: str, raw: RawMessage) -> DeadLetter | None:
    """The group's dead letter for this message (by what it is, wherever it sits), if it has one."""
    return _same_message(group, identity(raw)).first()


def _same_message(group: str, ident: Identity) -> QuerySet[DeadLetter]:
    if ident.event_id is not None:
        return DeadLetter.objects.filter(group=group, event_id=ident.event_id)
    return DeadLetter.objects.filter(group=group, event_id__isnull=True, digest=ident.digest)


# --- recording dead letters -------------------------------------------------------------------------------


@transaction.atomic
def deadletter_record(
    *, group: str, raw: RawMessage, failure: Failure, attempts: int, first_failed_at: datetime | None = None,
    blocked_by_id: int | None = None, auto_retry: bool = False, known: Known | None = None,
) -> DeadLetter:
    """Put a message in the ledger (once per message and group, the message known by its event id or, without
    one, its bytes: a redelivered one, at its old offset or a new one, updates its row).

    Key, value and header values are stored as the bytes they are; text columns get `safe_text`. If this still
    fails, the caller falls back to `deadletter_record_minimal`. `auto_retry`: a retryable failure the consumer
    gave up on in line becomes `retrying`, re-tried by `deadletter_retry_due` (when automatic retries are on).
    `known`: the message's identity and ordering scope when the caller has them (the consumer decoded it already).
    """
    now = timezone.now()
    ident, scope = known or (identity(raw), message_scope(raw, group=group))
    existing = _same_message(group, ident).select_for_update().first()
    if existing:
        if existing.is_unresolved and existing.blocked_by_id is None and blocked_by_id is None:
            _set_failure(existing, failure, attempts=existing.attempts + attempts, at=now)
            existing.save()
        return existing
    dead_letter = DeadLetter(
        group=group, topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key,
        scope=scope, value=raw.value or b"", headers=encode_headers(raw.headers),
        event_id=ident.event_id, digest=ident.digest,
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
    known: Known | None = None,
) -> None:
    """The ledger row of last resort, when recording a failure in full failed: the raw bytes, the reason and
    why the full record failed, in columns nothing foreign can break (bytea, base64, ASCII). A row that
    already exists for the message (same event id, or same bytes) wins (ON CONFLICT DO NOTHING): either way
    the message is in the ledger."""
    now = timezone.now()
    ident: Identity | None = known[0] if known else None
    scope = known[1] if known else raw.key
    if ident is None:
        try:
            ident = identity(raw)
            scope = message_scope(raw, group=group)
        except Exception:  # noqa: BLE001 - without its identity the row is still the message's, by its bytes
            ident = None
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
            scope=scope, value=raw.value or b"", headers=headers,
            event_id=ident.event_id if ident else None,
            digest=ident.digest if ident else message_digest(key=raw.key, value=raw.value, headers=[]),
            reason=failure.reason, handler=_ascii(failure.handler)[:300],
            exception_class=_ascii(failure.exception_class)[:300], error_message=message,
            fingerprint=fingerprint(exception_class="", handler="", message="unrecorded"), attempts=1,
            first_failed_at=now, last_failed_at=now, blocked_by_id=blocked_by_id,
        )
    ], ignore_conflicts=True)


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode().replace("\x00", "\\x00")


def _set_failure(dead_letter: DeadLetter, failure: Failure, *, attempts: int, at: datetime) -> None:
    dead_letter.reason = failure.reason
    dead_letter.handler = safe_text(failure.handler, limit=300)
    dead_letter.exception_class = safe_text(failure.exception_class, limit=300)
    dead_letter.error_message = safe_text(failure.message)
    dead_letter.traceback = safe_text(failure.traceback)
    # Parked messages share one failure group: their own cause is unknown until they run.
    dead_letter.fingerprint = fingerprint(exception_class="", handler="", message="parked") if (
        failure.reason == DeadLetter.Reason.PARKED
    ) else failure.fingerprint
    dead_letter.attempts = attempts
    dead_letter.last_failed_at = at
    fix = failure.fix if failure.fix is not None and _is_site_path(failure.fix.url) else None
    dead_letter.fix_label = safe_text(fix.label, limit=200) if fix else ""
    dead_letter.fix_url = fix.url[:500] if fix else ""


def _is_site_path(url: object) -> bool:
    """Only a path of this site becomes a link: never another host, a scheme like javascript:, or a NUL."""
    return isinstance(url, str) and url.startswith("/") and not url.startswith("//") and url.isprintable() \
        and "\\" not in url and len(url) <= 500


# --- automatic retry schedule -----------------------------------------------------------------------------


def auto_retry_delay(retries_done: int) -> timedelta:
    """Delay before automatic retry number `retries_done + 1`: doubling from the initial delay, capped."""
    initial = settings.CONSUMER_AUTO_RETRY_BACKOFF_INITIAL_S
    return timedelta(seconds=min(initial * 2 ** min(retries_done, 32), settings.CONSUMER_AUTO_RETRY_BACKOFF_MAX_S))


def _retryable(failure: Failure) -> bool:
    return failure.reason == DeadLetter.Reason.HANDLER_ERROR


# --- re-runs, resolutions, history ------------------------------------------------------------------------


def record_rerun_failure(dead_letter: DeadLetter, error: Exception) -> Failure:
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


def mark_replayed(dead_letter: DeadLetter) -> None:
    """Resolved by running it (a replay, an automatic retry, a release): no further try is scheduled."""
    dead_letter.status = DeadLetter.Status.REPLAYED
    dead_letter.resolved_at = timezone.now()
    dead_letter.next_attempt_at = None
    dead_letter.save(update_fields=["status", "resolved_at", "next_attempt_at"])
    supersede_pending_edits(dead_letter)


def supersede_pending_edits(dead_letter: DeadLetter) -> None:
    """A resolved dead letter has nothing left to approve: its edit awaiting approval can never be applied."""
    DeadLetterEdit.objects.filter(dead_letter=dead_letter, status=DeadLetterEdit.Status.PENDING).update(
        status=DeadLetterEdit.Status.SUPERSEDED
    )


def add_history(
    dead_letter: DeadLetter, *, action: str, outcome: str, actor: AbstractBaseUser | None, **fields: str
) -> None:
    """One line of the dead letter's history (`DeadLetterReplay`): what was done, by whom, with what outcome."""
    if "actor_name" in fields:
        fields["actor_name"] = safe_text(fields["actor_name"], limit=150)
    DeadLetterReplay.objects.create(
        dead_letter=dead_letter, action=action, outcome=outcome, actor=actor, at=timezone.now(), **fields
    )
