"""Per-aggregate order: the advisory lock of a (group, scope), the head dead letter a scope's later messages park
behind, and the release of the parked messages once their head is resolved.

A message's ordering scope is the aggregate its event changes (`route:12`, `customer:5`; see
`decoding.message_scope`), not its Kafka key: the key only picks the partition, and other aggregates share it
(every route of a truck). Replay, automatic retries and the consumer agree on one rule: while a scope (its exact
bytes) has an unresolved dead letter (pending, retrying, replaying, or parked), later messages of that scope are
parked behind its head; resolving the head (replay, automatic retry or discard) runs the parked ones in order,
and the first of a scope that fails becomes that scope's new head. All sides take the same per-(group, scope)
advisory lock, so a message cannot be parked behind a head that is being resolved at the same moment.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from apps.common.errors import ApplicationError
from apps.common.postgres import advisory_lock_id
from apps.consumers.decoding import message_scope
from apps.consumers.inbox import apply_stored, stored_message
from apps.consumers.ledger import Failure, add_history, mark_replayed, record_rerun_failure
from apps.consumers.models import DeadLetter, DeadLetterReplay

Action = DeadLetterReplay.Action
Outcome = DeadLetterReplay.Outcome


def lock_scopes(*, group: str, scopes: list[bytes]) -> None:
    """Serialise the consumer and replays on these (group, scope)s until the transaction ends."""
    with connection.cursor() as cursor:
        for lock_id in sorted({advisory_lock_id(b"consumers", group.encode(), scope) for scope in scopes}):
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


def stored_scope(dead_letter: DeadLetter) -> bytes | None:
    """The dead letter's scope; for a row an older release wrote without one, computed from the stored message."""
    scope = dead_letter.scope_bytes()
    return scope if scope is not None else message_scope(stored_message(dead_letter), group=dead_letter.group)


def lock_dead_letter(dead_letter_id: int) -> DeadLetter:
    """The per-scope lock first (same order as the consumer), then the row."""
    try:
        unlocked = DeadLetter.objects.get(pk=dead_letter_id)
    except DeadLetter.DoesNotExist:
        raise ApplicationError(f"dead letter #{dead_letter_id} does not exist") from None
    scope = stored_scope(unlocked)
    if scope is not None:
        lock_scopes(group=unlocked.group, scopes=[scope])
    return DeadLetter.objects.select_for_update().get(pk=dead_letter_id)


def blocking_heads(*, group: str, scopes: list[bytes]) -> dict[bytes, int]:
    """scope -> id of the unresolved head dead letter that later messages of that scope must wait behind.

    A scope is blocked while it has any unresolved dead letter: its head, or a message parked behind a head
    (rows from before scopes were parked by key, possibly behind another aggregate's head: the scope's later
    messages then wait behind that same head, in order). Scopes are compared as bytes.
    """
    rows = (
        DeadLetter.objects.filter(group=group, scope__in=scopes, status__in=DeadLetter.UNRESOLVED)
        .order_by("scope", "id").distinct("scope")
        .values_list("scope", "id", "blocked_by_id")
    )
    return {bytes(scope): blocked_by_id or head_id for scope, head_id, blocked_by_id in rows}


def lock_blocked(*, group: str, heads: dict[bytes, int]) -> None:
    """Lock the blocked scopes and their heads' own scopes (the same but for rows parked by key before scopes),
    so a head being resolved right now finishes first and the caller reads its outcome."""
    head_scopes = DeadLetter.objects.filter(pk__in=set(heads.values()), scope__isnull=False).values_list(
        "scope", flat=True
    )
    lock_scopes(group=group, scopes=[*heads, *(bytes(scope) for scope in head_scopes)])


@transaction.atomic
def deadletter_fill_scopes(*, group: str) -> int:
    """Give the group's unresolved dead letters that have no scope (written by a release before scopes) theirs,
    so the consumer's per-scope check sees them. Rows a replay holds are skipped: it computes the scope itself.
    Returns how many were filled."""
    filled = 0
    rows = (
        DeadLetter.objects.select_for_update(skip_locked=True)
        .filter(group=group, scope__isnull=True, status__in=DeadLetter.UNRESOLVED)
        .order_by("id")
    )
    for row in rows.iterator(chunk_size=500):
        scope = stored_scope(row)
        if scope is not None:
            filled += DeadLetter.objects.filter(pk=row.pk).update(scope=scope)
    return filled


def parked_failure(head_id: int) -> Failure:
    """The ledger's failure of a message parked behind the head `head_id` (it did not run)."""
    return Failure(
        reason=DeadLetter.Reason.PARKED, exception_class="", message=f"parked behind dead letter #{head_id}"
    )


def release_followers(
    head: DeadLetter, *, actor: AbstractBaseUser | None, auto_retry: bool = False, actor_name: str = ""
) -> tuple[list[int], int | None]:
    """Run the messages parked behind `head` in order; a failure becomes its scope's new head, and the later parked
    messages of that scope wait behind it. Returns the released ids and the first new head.

    All of a head's followers share its scope, except rows parked by key before scopes existed: those of another
    aggregate do not wait for a failure that is not theirs. With `auto_retry` (the release of an automatic retry,
    nobody watching) a retryable failure of a new head is retried automatically too; after an operator's replay or
    discard it is pending, for them.
    """
    followers = list(
        DeadLetter.objects.select_for_update()
        .filter(blocked_by=head, status__in=DeadLetter.UNRESOLVED)
        .order_by("id")
    )
    released: list[int] = []
    new_heads: dict[bytes | None, DeadLetter] = {}
    for follower in followers:
        scope = stored_scope(follower)
        if scope is not None and scope in new_heads:  # an earlier message of its aggregate just failed: wait behind it
            DeadLetter.objects.filter(pk=follower.pk).update(blocked_by=new_heads[scope])
            continue
        try:
            applied = apply_stored(follower)
        except Exception as error:  # noqa: BLE001 - recorded; the follower now blocks the rest of its scope
            follower.blocked_by = None
            if auto_retry:
                follower.status = DeadLetter.Status.RETRYING  # record_rerun_failure keeps it so if retryable
            failure = record_rerun_failure(follower, error)
            add_history(follower, action=Action.RELEASE, outcome=Outcome.FAILED, actor=actor, error=failure.message,
                        actor_name=actor_name)
            if scope is not None:
                new_heads[scope] = follower
            continue
        mark_replayed(follower)
        add_history(follower, action=Action.RELEASE, outcome=Outcome.APPLIED if applied else Outcome.DUPLICATE,
                    actor=actor, actor_name=actor_name)
        released.append(follower.pk)
    first = min((dead_letter.pk for dead_letter in new_heads.values()), default=None)
    return released, first
