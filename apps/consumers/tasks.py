"""Thin Celery tasks: background replay of large admin selections, the automatic retries that are due, and the
inbox retention purge."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings

from apps.common.errors import ApplicationError
from apps.common.redaction import redact
from apps.consumers.inbox import inbox_purge
from apps.consumers.models import ReplayRequest
from apps.consumers.replay import (
    deadletter_replay_queued,
    deadletter_replays_not_sent,
    deadletter_requeue_stale_replays,
    deadletter_retry_due,
)

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def replay_dead_letters(request_id: int | list[int], dead_letter_ids: list[int] | int | None) -> dict[str, int]:
    """Replay each id of a replay request (`ReplayRequest`, written by whoever queued it, who the replays are
    attributed to) in its own transaction; ids the request was not made for are left alone. A refused or failed
    one does not stop the others, and none is left `replaying` (at the replay cap it goes back to pending). Past
    CONSUMER_REPLAY_TASK_BUDGET_S the rest go to a new task, so the time limit never kills this one with dead
    letters it has not started.

    A message of an earlier release, `([ids], actor_id)`, still replays its ids, attributed to nobody: a user id
    in a broker message is anyone's claim."""
    request: ReplayRequest | None = None
    if isinstance(request_id, list):
        ids = request_id
        logger.warning("background replay of %d dead letters from an earlier release's task: attributed to no one",
                       len(ids))
    else:
        request = ReplayRequest.objects.select_related("actor").filter(pk=request_id).first()
        asked = set(request.dead_letter_ids) if request else set()
        sent = dead_letter_ids if isinstance(dead_letter_ids, list) else []
        ids = [i for i in sent if isinstance(i, int) and i in asked]
        if len(ids) != len(sent):
            logger.warning("replay request #%s: %d dead letters it was not made for left alone", request_id,
                           len(sent) - len(ids))
    actor = request.actor if request else None
    deadline = time.monotonic() + settings.CONSUMER_REPLAY_TASK_BUDGET_S
    outcomes: dict[str, int] = {}
    for index, dead_letter_id in enumerate(ids):
        if index and time.monotonic() >= deadline:
            _hand_on(ids[index:], request.pk if request else None)
            break
        try:
            outcome = deadletter_replay_queued(dead_letter_id=dead_letter_id, actor=actor).outcome
        except ApplicationError as error:
            logger.info("replay of dead letter #%s refused: %s", dead_letter_id, redact(str(error)))
            outcome = "refused"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    logger.info("background replay of %d dead letters: %s", len(ids), outcomes)
    return outcomes


def _hand_on(rest: list[int], request_id: int | None) -> None:
    try:
        if request_id is None:
            replay_dead_letters.delay(rest, None)  # an earlier release's message: still attributed to no one
        else:
            replay_dead_letters.delay(request_id, rest)
    except Exception:
        deadletter_replays_not_sent(dead_letter_ids=rest)  # the stale sweep queues them at its next run
        raise
    logger.info("background replay: time budget spent, %d dead letters handed to a new task", len(rest))


@shared_task(ignore_result=True)
def requeue_stale_replays() -> int:
    """Periodic (beat): re-queue background replays whose worker died after starting, or whose task was never
    sent or never started (CONSUMER_REPLAY_STALE_MINUTES, CONSUMER_REPLAY_LOST_HOURS)."""
    return deadletter_requeue_stale_replays()


@shared_task(ignore_result=True)
def retry_due_dead_letters() -> dict[str, int]:
    """Periodic (beat, every CONSUMER_AUTO_RETRY_SWEEP_S): the automatic retries of `retrying` dead letters."""
    return deadletter_retry_due()


@shared_task(ignore_result=True)
def purge_inbox() -> int:
    return inbox_purge()
