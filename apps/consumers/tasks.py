"""Thin Celery tasks: background replay of large admin selections, the automatic retries that are due, and the
inbox retention purge."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model

from apps.common.errors import ApplicationError
from apps.common.redaction import redact
from apps.consumers.inbox import inbox_purge
from apps.consumers.replay import (
    deadletter_replay_queued,
    deadletter_replays_not_sent,
    deadletter_requeue_stale_replays,
    deadletter_retry_due,
)

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def replay_dead_letters(dead_letter_ids: list[int], actor_id: int | None) -> dict[str, int]:
    """Replay each id in its own transaction; a refused or failed one does not stop the others, and none is
    left `replaying` (at the replay cap it goes back to pending). Past CONSUMER_REPLAY_TASK_BUDGET_S the rest
    go to a new task, so the time limit never kills this one with dead letters it has not started."""
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    deadline = time.monotonic() + settings.CONSUMER_REPLAY_TASK_BUDGET_S
    outcomes: dict[str, int] = {}
    for index, dead_letter_id in enumerate(dead_letter_ids):
        if index and time.monotonic() >= deadline:
            _hand_on(dead_letter_ids[index:], actor_id)
            break
        try:
            outcome = deadletter_replay_queued(dead_letter_id=dead_letter_id, actor=actor).outcome
        except ApplicationError as error:
            logger.info("replay of dead letter #%s refused: %s", dead_letter_id, redact(str(error)))
            outcome = "refused"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    logger.info("background replay of %d dead letters: %s", len(dead_letter_ids), outcomes)
    return outcomes


def _hand_on(rest: list[int], actor_id: int | None) -> None:
    try:
        replay_dead_letters.delay(rest, actor_id)
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
