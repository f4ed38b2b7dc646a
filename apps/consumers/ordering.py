"""Per-key order: the advisory lock of a (group, key), the head dead letter a key's later messages park behind,
and the release of the parked messages once their head is resolved.

Replay, automatic retries and the consumer agree on one rule for a key's order: while a key (its exact bytes)
has an unresolved head dead letter (pending, retrying, replaying), later messages of that key are parked behind
it; resolving the head (replay, automatic retry or discard) runs the parked ones in order, and the first that
fails becomes the new head. All sides take the same per-(group, key) advisory lock, so a message cannot be
parked behind a head that is being resolved at the same moment.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection

from apps.common.errors import ApplicationError
from apps.common.postgres import advisory_lock_id
from apps.consumers.inbox import apply_stored
from apps.consumers.ledger import Failure, add_history, mark_replayed, record_rerun_failure
from apps.consumers.models import DeadLetter, DeadLetterReplay

Action = DeadLetterReplay.Action
Outcome = DeadLetterReplay.Outcome


def lock_keys(*, group: str, keys: list[bytes]) -> None:
    """Serialise the consumer and replays on these (group, key)s until the transaction ends."""
    with connection.cursor() as cursor:
        for lock_id in sorted({advisory_lock_id(b"consumers", group.encode(), key) for key in keys}):
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


def lock_dead_letter(dead_letter_id: int) -> DeadLetter:
    """The per-key lock first (same order as the consumer), then the row."""
    try:
        group, key = DeadLetter.objects.values_list("group", "key").get(pk=dead_letter_id)
    except DeadLetter.DoesNotExist:
        raise ApplicationError(f"dead letter #{dead_letter_id} does not exist") from None
    if key is not None:
        lock_keys(group=group, keys=[bytes(key)])
    return DeadLetter.objects.select_for_update().get(pk=dead_letter_id)


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


def parked_failure(head_id: int) -> Failure:
    """The ledger's failure of a message parked behind the head `head_id` (it did not run)."""
    return Failure(
        reason=DeadLetter.Reason.PARKED, exception_class="", message=f"parked behind dead letter #{head_id}"
    )


def release_followers(
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
            applied = apply_stored(follower)
        except Exception as error:  # noqa: BLE001 - recorded; the follower now blocks the rest
            follower.blocked_by = None
            if auto_retry:
                follower.status = DeadLetter.Status.RETRYING  # record_rerun_failure keeps it so if retryable
            failure = record_rerun_failure(follower, error)
            add_history(follower, action=Action.RELEASE, outcome=Outcome.FAILED, actor=actor, error=failure.message,
                        actor_name=actor_name)
            rest = [f.pk for f in followers[index + 1 :]]
            DeadLetter.objects.filter(pk__in=rest).update(blocked_by=follower)
            return released, follower.pk
        mark_replayed(follower)
        add_history(follower, action=Action.RELEASE, outcome=Outcome.APPLIED if applied else Outcome.DUPLICATE,
                    actor=actor, actor_name=actor_name)
        released.append(follower.pk)
    return released, None
