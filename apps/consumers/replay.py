"""Resolving dead letters: replay (now or queued in the background, with the stale-replay sweep), edit and
replay, discard (one, or a selection that runs none of itself), and the automatic retries of `retrying` ones.
Each takes the scope's lock first and, on success, releases the messages parked behind (apps.consumers.ordering)."""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import ValidationError

from apps.common.errors import ApplicationError
from apps.common.queueing import enqueue_on_commit
from apps.common.text import counted
from apps.consumers import registry
from apps.consumers.inbox import apply_stored
from apps.consumers.ledger import add_history, mark_replayed, record_rerun_failure, supersede_pending_edits
from apps.consumers.models import DeadLetter, DeadLetterEdit, DeadLetterReplay, ReplayRequest
from apps.consumers.ordering import lock_dead_letter, release_followers
from apps.contracts.base import DomainEvent

Action = DeadLetterReplay.Action
Outcome = DeadLetterReplay.Outcome
_REPLAYABLE = (DeadLetter.Status.PENDING, DeadLetter.Status.RETRYING)
_MISSING = object()


@dataclass
class ReplayResult:
    """What resolving a dead letter did: its outcome, and the parked messages it released or the new head."""

    dead_letter: DeadLetter
    outcome: str
    error: str = ""
    released: list[int] = field(default_factory=list)
    new_head: int | None = None
    edit_id: int | None = None  # the edit an edit-and-replay proposed or applied


# --- replay, edit, discard --------------------------------------------------------------------------------


def deadletter_replay(
    *, dead_letter_id: int, actor: AbstractBaseUser | None = None, actor_name: str = ""
) -> ReplayResult:
    """Re-run the dead letter's group handler on the stored message, through the inbox.

    Success: replayed, and the messages parked behind it run in order. Failure: stays pending with
    attempts + 1 and the new error; nothing is retried automatically. `actor_name` says who acted when that
    is no user of this site (the replay command).
    """
    with transaction.atomic():
        dead_letter = lock_dead_letter(dead_letter_id)
        _check_replayable(dead_letter, enforce_cap=True)
        return _replay_locked(dead_letter, actor=actor, action=Action.REPLAY, actor_name=actor_name)


def deadletter_edit_and_replay(
    *, dead_letter_id: int, actor: AbstractBaseUser | None, payload: str
) -> ReplayResult:
    """Replace the payload (validated against the event's schema; diff kept in the history), then replay.

    An edit that changes a field the event type guards (`approval_fields`: who or what is billed) is only
    proposed: outcome `awaiting_approval`, the letter unchanged until a second person with
    `approve_billing_edit` approves it (`deadletter_edit_approve`). A newer proposal replaces a pending one.
    """
    with transaction.atomic():
        dead_letter = lock_dead_letter(dead_letter_id)
        _check_replayable(dead_letter, enforce_cap=False)
        event_class = _edit_schema(dead_letter)
        try:
            event = event_class.model_validate_json(payload)
        except ValidationError as error:
            raise ApplicationError(f"invalid against {dead_letter.event_type}: {error}", field="payload") from None
        supersede_pending_edits(dead_letter)
        edit = DeadLetterEdit.objects.create(
            dead_letter=dead_letter, payload=event.model_dump_json().encode(), proposed_by=actor,
            proposed_at=timezone.now(), payload_diff=_diff(dead_letter, event),
            guarded_fields=_guarded_changes(event_class, before=bytes(dead_letter.value), after=event),
        )
        if edit.needs_approval:
            add_history(dead_letter, action=Action.EDIT_PROPOSED, outcome=Outcome.AWAITING_APPROVAL, actor=actor,
                        payload_diff=edit.payload_diff)
            return ReplayResult(dead_letter=dead_letter, outcome=Outcome.AWAITING_APPROVAL, edit_id=edit.pk)
        edit.status = DeadLetterEdit.Status.APPLIED
        edit.save(update_fields=["status"])
        return _apply_edit(dead_letter, edit, actor=actor)


def deadletter_edit_approve(*, edit_id: int, actor: AbstractBaseUser) -> ReplayResult:
    """Finance's second pair of eyes: apply a pending edit of billing fields and replay it. The approver must
    hold `approve_billing_edit` and be someone else than the proposer; both, with their times, stay on the edit."""
    with transaction.atomic():
        edit = _lock_pending_edit(edit_id, actor=actor, verb="approve")
        if edit.proposed_by_id is not None and edit.proposed_by_id == actor.pk:
            raise ApplicationError(
                f"edit #{edit.pk} is yours: a second person must approve an edit of billing fields"
            )
        dead_letter = edit.dead_letter
        _check_replayable(dead_letter, enforce_cap=False)
        edit.status, edit.approved_by, edit.approved_at = DeadLetterEdit.Status.APPLIED, actor, timezone.now()
        edit.save(update_fields=["status", "approved_by", "approved_at"])
        return _apply_edit(dead_letter, edit, actor=actor)


def deadletter_edit_reject(*, edit_id: int, actor: AbstractBaseUser, reason: str) -> DeadLetterEdit:
    """Finance refuses a pending edit of billing fields (with a reason); the dead letter keeps its payload."""
    if not reason.strip():
        raise ApplicationError("a reason is required to reject an edit", field="reason")
    with transaction.atomic():
        edit = _lock_pending_edit(edit_id, actor=actor, verb="reject")
        edit.status, edit.rejected_by, edit.rejected_at = DeadLetterEdit.Status.REJECTED, actor, timezone.now()
        edit.reason = reason.strip()
        edit.save(update_fields=["status", "rejected_by", "rejected_at", "reason"])
        add_history(edit.dead_letter, action=Action.EDIT_REJECTED, outcome=Outcome.REJECTED, actor=actor,
                    reason=edit.reason)
        return edit


def _lock_pending_edit(edit_id: int, *, actor: AbstractBaseUser, verb: str) -> DeadLetterEdit:
    """The edit, read again under its dead letter's lock; refused unless pending and `actor` may decide it."""
    dead_letter_id = DeadLetterEdit.objects.filter(pk=edit_id).values_list("dead_letter_id", flat=True).first()
    if dead_letter_id is None:
        raise ApplicationError(f"there is no edit #{edit_id}")
    dead_letter = lock_dead_letter(dead_letter_id)
    edit = DeadLetterEdit.objects.get(pk=edit_id)
    edit.dead_letter = dead_letter
    if not actor.has_perm("consumers.approve_billing_edit"):
        raise ApplicationError(f"to {verb} an edit of billing fields needs finance's permission (approve_billing_edit)")
    if edit.status != DeadLetterEdit.Status.PENDING:
        raise ApplicationError(
            f"edit #{edit.pk} is {edit.get_status_display().lower()}: only a pending one can be decided"
        )
    return edit


def _edit_schema(dead_letter: DeadLetter) -> type[DomainEvent]:
    registration = registry.handler_for(dead_letter.group, dead_letter.event_type)
    if registration is None:
        raise ApplicationError(
            f"{dead_letter.group} has no handler for {dead_letter.event_type or 'an unreadable type'}; "
            "there is no schema to validate an edit against", field="payload",
        )
    return registration.event_class


def _guarded_changes(event_class: type[DomainEvent], *, before: bytes, after: DomainEvent) -> list[str]:
    """The guarded fields whose value the edit changes. The received value is compared as the schema reads it
    when it is valid, else as JSON; anything unreadable counts as changed (approval is the safe side)."""
    try:
        received = event_class.model_validate_json(before)
    except ValidationError:
        try:
            raw = json.loads(before)
        except ValueError:
            raw = None
        edited = after.model_dump(mode="json")
        return sorted(
            name for name in event_class.approval_fields
            if not isinstance(raw, dict) or raw.get(name, _MISSING) != edited.get(name)
        )
    return sorted(name for name in event_class.approval_fields if getattr(received, name) != getattr(after, name))


def _diff(dead_letter: DeadLetter, event: DomainEvent) -> str:
    edited = json.dumps(event.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False)
    return "".join(
        difflib.unified_diff(
            dead_letter.pretty_payload().splitlines(keepends=True), (edited + "\n").splitlines(keepends=True),
            fromfile="received", tofile="edited",
        )
    )


def _apply_edit(dead_letter: DeadLetter, edit: DeadLetterEdit, *, actor: AbstractBaseUser | None) -> ReplayResult:
    dead_letter.value = bytes(edit.payload)
    dead_letter.save(update_fields=["value"])
    result = _replay_locked(dead_letter, actor=actor, action=Action.EDIT_AND_REPLAY, payload_diff=edit.payload_diff)
    result.edit_id = edit.pk
    return result


def deadletter_discard(*, dead_letter_id: int, actor: AbstractBaseUser | None, reason: str) -> ReplayResult:
    """Give up on a message, with a reason. Discarding a head releases its parked messages in order:
    the aggregate's order was only held for this message, and nothing else is waiting on it."""
    if not reason.strip():
        raise ApplicationError("a reason is required to discard a dead letter", field="reason")
    with transaction.atomic():
        dead_letter = lock_dead_letter(dead_letter_id)
        if not dead_letter.is_unresolved:
            raise ApplicationError(f"dead letter #{dead_letter.pk} is already {dead_letter.status}")
        dead_letter.status = DeadLetter.Status.DISCARDED
        dead_letter.resolved_at = timezone.now()
        dead_letter.next_attempt_at = None
        dead_letter.save(update_fields=["status", "resolved_at", "next_attempt_at"])
        supersede_pending_edits(dead_letter)
        add_history(dead_letter, action=Action.DISCARD, outcome=Outcome.DISCARDED, actor=actor, reason=reason.strip())
        result = ReplayResult(dead_letter=dead_letter, outcome=Outcome.DISCARDED)
        if dead_letter.blocked_by_id is None:
            result.released, result.new_head = release_followers(dead_letter, actor=actor)
        return result


@dataclass
class DiscardSummary:
    """What discarding a selection did: the dead letters discarded, the parked messages outside the selection
    that ran (released), and the ids refused with why."""

    discarded: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)


def deadletter_discard_many(
    *, dead_letter_ids: Sequence[int], actor: AbstractBaseUser | None, reason: str
) -> DiscardSummary:
    """Discard a selection (admin "Discard selected", the API's bulk discard), one transaction per dead letter:
    nothing selected is ever applied. Parked messages go first, so by the time their head is discarded they
    are resolved and its release runs only the parked messages left out of the selection."""
    if not reason.strip():
        raise ApplicationError("a reason is required to discard a dead letter", field="reason")
    ids = sorted(set(dead_letter_ids))
    parked = set(DeadLetter.objects.filter(id__in=ids, blocked_by__isnull=False).values_list("id", flat=True))
    summary = DiscardSummary()
    for dead_letter_id in sorted(ids, key=lambda i: (i not in parked, i)):
        try:
            result = deadletter_discard(dead_letter_id=dead_letter_id, actor=actor, reason=reason)
        except ApplicationError as error:
            summary.refused[dead_letter_id] = error.message
            continue
        summary.discarded.append(dead_letter_id)
        summary.released.extend(result.released)
    return summary


def _check_replayable(dead_letter: DeadLetter, *, enforce_cap: bool) -> None:
    if not dead_letter.is_unresolved:
        raise ApplicationError(f"dead letter #{dead_letter.pk} is already {dead_letter.status}")
    if dead_letter.blocked_by_id is not None:
        raise ApplicationError(
            f"dead letter #{dead_letter.pk} is parked behind #{dead_letter.blocked_by_id}: "
            "replay or discard that one first, its aggregate's order depends on it"
        )
    failed = _failed_replays(dead_letter)
    if enforce_cap and failed >= settings.CONSUMER_REPLAY_MAX_ATTEMPTS:
        raise ApplicationError(
            f"dead letter #{dead_letter.pk} failed {counted(failed, 'replay')} (the cap): "
            "fix its cause, edit or discard it"
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
        applied = apply_stored(dead_letter)
    except Exception as error:  # noqa: BLE001 - any failure is recorded on the dead letter
        failure = record_rerun_failure(dead_letter, error)
        add_history(dead_letter, action=action, outcome=Outcome.FAILED, actor=actor, error=failure.message,
                    payload_diff=payload_diff, actor_name=actor_name)
        return ReplayResult(dead_letter=dead_letter, outcome=Outcome.FAILED, error=failure.message)
    outcome = Outcome.APPLIED if applied else Outcome.DUPLICATE
    mark_replayed(dead_letter)
    add_history(dead_letter, action=action, outcome=outcome, actor=actor, payload_diff=payload_diff,
                actor_name=actor_name)
    released, new_head = release_followers(dead_letter, actor=actor, actor_name=actor_name)
    return ReplayResult(dead_letter=dead_letter, outcome=outcome, released=released, new_head=new_head)


# --- background replays -----------------------------------------------------------------------------------


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
    _enqueue_replays(ids, actor=actor)
    return ids


def _enqueue_replays(ids: list[int], *, actor: AbstractBaseUser | None, notes: dict[int, str] | None = None) -> None:
    """Mark `ids` queued (not started) with a history line each (`notes`: why, by id) and send their tasks on
    commit, in chunks."""
    now = timezone.now()
    DeadLetter.objects.filter(id__in=ids).update(
        status=DeadLetter.Status.REPLAYING, next_attempt_at=None, replay_queued_at=now, replay_started_at=None
    )
    DeadLetterReplay.objects.bulk_create(
        DeadLetterReplay(dead_letter_id=i, action=Action.QUEUE, outcome=Outcome.QUEUED, actor=actor, at=now,
                         error=(notes or {}).get(i, ""))
        for i in ids
    )
    if not ids:
        return
    # The task carries this row's id, never a user's: who asked is read from the database, not the broker.
    request = ReplayRequest.objects.create(actor=actor, requested_at=now, dead_letter_ids=ids)
    chunk = settings.CONSUMER_REPLAY_TASK_CHUNK
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        # robust: a Celery broker down at commit must not fail the caller; the rows say their task was not
        # sent, and the stale sweep queues them again at its next run.
        enqueue_on_commit("apps.consumers.tasks.replay_dead_letters", request.pk, part,
                          on_failure=partial(deadletter_replays_not_sent, dead_letter_ids=part))


def deadletter_replays_not_sent(*, dead_letter_ids: list[int]) -> int:
    """The task for these queued replays could not be sent (Celery broker down): mark them so (no queue time),
    and the stale sweep queues them again at its next run instead of waiting for CONSUMER_REPLAY_LOST_HOURS."""
    return DeadLetter.objects.filter(
        id__in=dead_letter_ids, status=DeadLetter.Status.REPLAYING, replay_started_at__isnull=True
    ).update(replay_queued_at=None)


def deadletter_replay_queued(*, dead_letter_id: int, actor: AbstractBaseUser | None = None) -> ReplayResult:
    """The background half of `deadletter_queue_replay`: replay a dead letter still `replaying`, under the same
    cap as a replay now. At the cap it goes back to `pending` (history: refused); one that is no longer
    `replaying` (handled meanwhile, or a second copy of the task) is skipped."""
    # Committed before the replay's own transaction: if this worker dies during the replay, the sweep knows
    # the task started (a dead worker), unlike one still waiting in the Celery queue.
    with transaction.atomic():
        DeadLetter.objects.filter(pk=dead_letter_id, status=DeadLetter.Status.REPLAYING).update(
            replay_started_at=timezone.now()
        )
    with transaction.atomic():
        dead_letter = lock_dead_letter(dead_letter_id)
        if dead_letter.status != DeadLetter.Status.REPLAYING:
            return ReplayResult(dead_letter=dead_letter, outcome="skipped")
        failed = _failed_replays(dead_letter)
        if failed >= settings.CONSUMER_REPLAY_MAX_ATTEMPTS:
            error = f"not replayed: it failed {counted(failed, 'replay')} (the cap); fix its cause, edit or discard it"
            dead_letter.status = DeadLetter.Status.PENDING
            dead_letter.save(update_fields=["status"])
            add_history(dead_letter, action=Action.REPLAY, outcome=Outcome.REFUSED, actor=actor, error=error)
            return ReplayResult(dead_letter=dead_letter, outcome=Outcome.REFUSED, error=error)
        return _replay_locked(dead_letter, actor=actor, action=Action.REPLAY)


def deadletter_requeue_stale_replays() -> int:
    """Beat: queue again the background replays whose task is gone, judged by whether it started, not by the
    clock alone (a task waiting in a long Celery queue is left alone). Returns how many were queued again.

    - Started, and still `replaying` CONSUMER_REPLAY_STALE_MINUTES later with no replay holding the row: its
      worker died during the replay. That counts as a failed replay (a message that kills its worker must
      reach the cap): below the cap it is queued again, at the cap it goes back to `pending`.
    - Never started: its task could not be sent (no queue time), or it was not started
      CONSUMER_REPLAY_LOST_HOURS after it was queued (its message was lost, e.g. the Celery broker purged).
      Queued again without counting a failure: it never ran. If the first task still comes, the second
      finds the dead letter handled and skips it.
    """
    now = timezone.now()
    died = Q(replay_started_at__lt=now - timedelta(minutes=settings.CONSUMER_REPLAY_STALE_MINUTES))
    lost_before = now - timedelta(hours=settings.CONSUMER_REPLAY_LOST_HOURS)
    lost = Q(replay_started_at__isnull=True) & (Q(replay_queued_at__isnull=True) | Q(replay_queued_at__lt=lost_before))
    with transaction.atomic():
        # A row a running replay holds is locked: that replay is alive, skip it.
        stale = list(
            DeadLetter.objects.select_for_update(skip_locked=True)
            .filter(died | lost, status=DeadLetter.Status.REPLAYING)
            .order_by("id")
        )
        requeue: list[int] = []
        notes: dict[int, str] = {}
        for dead_letter in stale:
            if dead_letter.replay_started_at is None:
                notes[dead_letter.pk] = _never_started(dead_letter)
                requeue.append(dead_letter.pk)
                continue
            add_history(dead_letter, action=Action.REPLAY, outcome=Outcome.FAILED, actor=None,
                        error=f"the background replay started but did not finish within "
                              f"{settings.CONSUMER_REPLAY_STALE_MINUTES} minutes (its worker died)")
            if _failed_replays(dead_letter) >= settings.CONSUMER_REPLAY_MAX_ATTEMPTS:
                dead_letter.status = DeadLetter.Status.PENDING
                dead_letter.save(update_fields=["status"])
            else:
                requeue.append(dead_letter.pk)
        _enqueue_replays(requeue, actor=None, notes=notes)
    return len(requeue)


def _never_started(dead_letter: DeadLetter) -> str:
    if dead_letter.replay_queued_at is None:
        return "queued again: its task could not be sent"
    return f"queued again: its task had not started {settings.CONSUMER_REPLAY_LOST_HOURS} hours after it was " \
           "queued (lost)"


# --- automatic retries ------------------------------------------------------------------------------------


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
        dead_letter = lock_dead_letter(dead_letter_id)
        now = timezone.now()
        if dead_letter.status != DeadLetter.Status.RETRYING or dead_letter.blocked_by_id is not None or (
            dead_letter.next_attempt_at and dead_letter.next_attempt_at > now
        ):
            return ReplayResult(dead_letter=dead_letter, outcome="skipped")
        try:
            applied = apply_stored(dead_letter)
        except Exception as error:  # noqa: BLE001 - recorded; retried later or left to a person
            dead_letter.auto_retries += 1
            failure = record_rerun_failure(dead_letter, error)
            add_history(
                dead_letter, action=Action.AUTO_RETRY, outcome=Outcome.FAILED, actor=None, error=failure.message
            )
            return ReplayResult(dead_letter=dead_letter, outcome=Outcome.FAILED, error=failure.message)
        mark_replayed(dead_letter)
        outcome = Outcome.APPLIED if applied else Outcome.DUPLICATE
        add_history(dead_letter, action=Action.AUTO_RETRY, outcome=outcome, actor=None)
        released, new_head = release_followers(dead_letter, actor=None, auto_retry=True)
        return ReplayResult(dead_letter=dead_letter, outcome=outcome, released=released, new_head=new_head)
