"""The `testing` group's handler: writes an Effect, or fails the way the scenario's Script says."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from uuid import UUID

from django.db import transaction

from apps.consumers.registry import EventMeta, NonRetryableError, handles, ignores
from tests.consumers.testapp.events import Happened, HappenedV2
from tests.consumers.testapp.models import Effect, Script

# Attempts per event in this process: retries roll the transaction back, so the count cannot live in the DB.
attempts: Counter[UUID] = Counter()
# Event ids whose on_commit callback ran, in order.
committed_callbacks: list[UUID] = []
# The Kafka key each handler run saw (meta.key, raw bytes), by event id.
seen_keys: dict[UUID, bytes | None] = {}
# The event ids of each call of the `testing-batch` group's batch handler, committed or not.
batch_calls: list[list[UUID]] = []


@handles(Happened, group="testing")
def record_effect(event: Happened, meta: EventMeta) -> None:
    attempts[meta.event_id] += 1
    seen_keys[meta.event_id] = meta.key
    transaction.on_commit(lambda: committed_callbacks.append(meta.event_id))
    script = Script.objects.filter(scenario=event.scenario).first() if event.scenario else None
    if script:
        time.sleep(script.sleep_s)
        if attempts[meta.event_id] <= script.fail_times:
            raise RuntimeError(f"planned failure {attempts[meta.event_id]} of event {event.seq}")
        if script.broken:
            error = NonRetryableError if script.non_retryable else RuntimeError
            raise error(f"scenario {event.scenario} is broken for key {event.key}")
    Effect.objects.create(event_id=meta.event_id, key=event.key, scenario=event.scenario, seq=event.seq)
    if script and script.crash_after_commit:
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))


@handles(Happened, group="testing-audit")
def audit(event: Happened, meta: EventMeta) -> None:
    """A second group on the same event type: replaying a `testing` dead letter must never run this."""
    Effect.objects.create(event_id=meta.event_id, key=event.key, scenario="audit", seq=event.seq)


def record_effects(events: list[tuple[Happened, EventMeta]]) -> None:
    """The `testing-batch` group's batch handler: the effects of a run at once, or a raise when a scripted
    scenario is in the run (so the runtime falls back to `record_effect`, message by message)."""
    event_ids = [meta.event_id for _, meta in events]
    batch_calls.append(event_ids)
    scripted = Script.objects.filter(scenario__in={event.scenario for event, _ in events if event.scenario})
    if scripted.exists():
        raise RuntimeError(f"scripted scenarios in the run: {sorted(scripted.values_list('scenario', flat=True))}")
    Effect.objects.bulk_create(
        Effect(event_id=meta.event_id, key=event.key, scenario=event.scenario, seq=event.seq) for event, meta in events
    )
    transaction.on_commit(lambda: committed_callbacks.extend(event_ids))


handles(Happened, group="testing-batch", batch=record_effects)(record_effect)


ignores(HappenedV2, group="testing", reason="the tests keep reading v1; v2 exists to test the declaration")
