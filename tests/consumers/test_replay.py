"""Replay, discard, edit and replay, background replays and automatic retries of dead letters (real database, no
broker needed)."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from apps.common.errors import ApplicationError
from apps.consumers.decoding import decode
from apps.consumers.inbox import inbox_apply
from apps.consumers.ledger import Failure, deadletter_record
from apps.consumers.models import DeadLetter, DeadLetterReplay, InboxEntry, ReplayRequest
from apps.consumers.replay import (
    deadletter_discard,
    deadletter_edit_and_replay,
    deadletter_queue_replay,
    deadletter_replay,
    deadletter_requeue_stale_replays,
    deadletter_retry_due,
)
from logiflow.celery import app as celery_app
from tests.consumers.factories import dead_letter, parked_dead_letter
from tests.consumers.support import effect_seqs, happened, raw_message
from tests.consumers.testapp import handlers
from tests.consumers.testapp.models import Effect, Script

pytestmark = pytest.mark.django_db
Status = DeadLetter.Status
Outcome = DeadLetterReplay.Outcome


@pytest.fixture
def operator() -> User:
    return User.objects.create_user("ops", is_staff=True)


def test_replay_after_fixing_the_cause_applies_once_and_releases_the_parked_messages_in_order(operator: User) -> None:
    script = Script.objects.create(scenario="broken", broken=True)
    head = dead_letter(1)
    followers = [parked_dead_letter(2, head), parked_dead_letter(3, head)]
    script.broken = False
    script.save()

    result = deadletter_replay(dead_letter_id=head.pk, actor=operator)

    assert (result.outcome, result.released, result.new_head) == (Outcome.APPLIED, [f.pk for f in followers], None)
    assert effect_seqs() == [1, 2, 3]
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {Status.REPLAYED}
    replay = head.history.get()
    assert (replay.action, replay.outcome, replay.actor) == ("replay", Outcome.APPLIED, operator)
    assert [h.action for h in DeadLetterReplay.objects.filter(dead_letter__in=followers)] == ["release", "release"]


def test_replay_that_fails_again_stays_pending_with_attempts_plus_one_and_the_new_error(operator: User) -> None:
    Script.objects.create(scenario="broken", broken=True)
    head = dead_letter(1)
    follower = parked_dead_letter(2, head)

    result = deadletter_replay(dead_letter_id=head.pk, actor=operator)

    head.refresh_from_db()
    assert result.outcome == Outcome.FAILED
    assert (head.status, head.attempts) == (Status.PENDING, 4)
    assert head.error_message == "scenario broken is broken for key truck-1"
    assert head.last_failed_at > head.first_failed_at
    assert head.history.get().outcome == Outcome.FAILED
    follower.refresh_from_db()
    assert (follower.status, follower.blocked_by_id) == (Status.PENDING, head.pk)
    assert not Effect.objects.exists()


def test_replay_stops_at_the_configured_cap_of_failed_replays(settings: object) -> None:
    settings.CONSUMER_REPLAY_MAX_ATTEMPTS = 2  # type: ignore[attr-defined]
    Script.objects.create(scenario="broken", broken=True)
    head = dead_letter(1)
    for _ in range(2):
        assert deadletter_replay(dead_letter_id=head.pk).outcome == Outcome.FAILED
    with pytest.raises(ApplicationError, match="failed 2 replays"):
        deadletter_replay(dead_letter_id=head.pk)


def test_replay_of_an_event_the_group_already_applied_is_a_no_op_through_the_inbox() -> None:
    head = dead_letter(1, scenario="")
    # The same event was applied meanwhile (e.g. redelivered and handled).
    decoded = decode(raw_message(happened(seq=1), event_id=head.event_id), group="testing")
    assert inbox_apply(decoded=decoded) is True  # type: ignore[arg-type]

    result = deadletter_replay(dead_letter_id=head.pk)

    assert result.outcome == Outcome.DUPLICATE
    assert Effect.objects.filter(event_id=head.event_id).count() == 1
    head.refresh_from_db()
    assert head.status == Status.REPLAYED


def test_replay_runs_only_the_dead_letters_group() -> None:
    head = dead_letter(1, scenario="")
    deadletter_replay(dead_letter_id=head.pk)
    assert list(InboxEntry.objects.values_list("group", flat=True)) == ["testing"]
    assert not Effect.objects.filter(scenario="audit").exists()


def test_parked_and_resolved_dead_letters_cannot_be_replayed_directly() -> None:
    Script.objects.create(scenario="broken", broken=True)
    head = dead_letter(1)
    follower = parked_dead_letter(2, head)
    with pytest.raises(ApplicationError, match=f"parked behind #{head.pk}"):
        deadletter_replay(dead_letter_id=follower.pk)
    deadletter_discard(dead_letter_id=head.pk, actor=None, reason="obsolete")
    with pytest.raises(ApplicationError, match="already discarded"):
        deadletter_replay(dead_letter_id=head.pk)


def test_discard_needs_a_reason_is_audited_and_releases_the_parked_messages(operator: User) -> None:
    Script.objects.create(scenario="broken", broken=True)
    head = dead_letter(1)
    follower = parked_dead_letter(2, head)
    with pytest.raises(ApplicationError, match="reason is required"):
        deadletter_discard(dead_letter_id=head.pk, actor=operator, reason="  ")
    assert DeadLetter.objects.get(pk=head.pk).status == Status.PENDING

    result = deadletter_discard(dead_letter_id=head.pk, actor=operator, reason="customer cancelled")

    assert result.released == [follower.pk]
    entry = DeadLetter.objects.get(pk=head.pk).history.get()
    assert (entry.action, entry.reason, entry.actor) == ("discard", "customer cancelled", operator)
    assert effect_seqs() == [2]


def test_edit_and_replay_validates_against_the_schema_and_keeps_the_diff(operator: User) -> None:
    head = dead_letter(1, scenario="", value=b'{"key": "truck-1", "seq": "one"}')
    with pytest.raises(ApplicationError, match="seq"):
        deadletter_edit_and_replay(dead_letter_id=head.pk, actor=operator, payload='{"key": "truck-1", "seq": -1}')
    head.refresh_from_db()
    assert bytes(head.value) == b'{"key": "truck-1", "seq": "one"}'
    assert not head.history.exists()

    result = deadletter_edit_and_replay(dead_letter_id=head.pk, actor=operator, payload='{"key": "truck-1", "seq": 1}')

    assert result.outcome == Outcome.APPLIED
    entry = head.history.get()
    assert entry.action == "edit_and_replay"
    assert '-  "seq": "one"' in entry.payload_diff and '+  "seq": 1' in entry.payload_diff
    assert effect_seqs() == [1]


def test_queued_replay_marks_replaying_and_the_celery_task_replays_them(
    operator: User, django_capture_on_commit_callbacks: object
) -> None:
    heads = [dead_letter(seq, key=f"truck-{seq}", scenario="") for seq in (1, 2)]
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
            queued = deadletter_queue_replay(dead_letter_ids=[h.pk for h in heads], actor=operator)
        assert set(DeadLetter.objects.values_list("status", flat=True)) == {Status.REPLAYING}
        for callback in callbacks:
            callback()
    finally:
        celery_app.conf.task_always_eager = False
    assert queued == [h.pk for h in heads]
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {Status.REPLAYED}
    assert effect_seqs() == [1, 2]


# --- automatic retries ------------------------------------------------------------------------------------------


def retrying(event_seq: int, *, key: str = "truck-1", scenario: str = "broken") -> DeadLetter:
    """A handler failure the consumer gave up on in line: `retrying`, as the runtime records it."""
    raw = raw_message(happened(key=key, scenario=scenario, seq=event_seq), offset=event_seq)
    return deadletter_record(group="testing", raw=raw, failure=Failure.from_exception(RuntimeError("boom")),
                             attempts=3, auto_retry=True)


def make_due(dead_letter: DeadLetter) -> None:
    DeadLetter.objects.filter(pk=dead_letter.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_automatic_retries_follow_the_backoff_schedule_then_the_dead_letter_becomes_pending(settings: object) -> None:
    settings.CONSUMER_AUTO_RETRY_MAX_ATTEMPTS = 3  # type: ignore[attr-defined]
    settings.CONSUMER_AUTO_RETRY_BACKOFF_INITIAL_S = 30  # type: ignore[attr-defined]
    settings.CONSUMER_AUTO_RETRY_BACKOFF_MAX_S = 100  # type: ignore[attr-defined]
    Script.objects.create(scenario="broken", broken=True)
    before = timezone.now()
    head = retrying(1)
    follower = parked_dead_letter(2, head)
    assert head.status == Status.RETRYING
    assert timedelta(seconds=29) < head.next_attempt_at - before < timedelta(seconds=31)  # type: ignore[operator]
    assert deadletter_retry_due() == {}

    delays = []
    for _ in range(3):
        make_due(head)
        started = timezone.now()
        assert deadletter_retry_due() == {"failed": 1}
        head.refresh_from_db()
        if head.next_attempt_at:
            delays.append(round((head.next_attempt_at - started).total_seconds()))

    assert delays == [60, 100]  # 30 s doubling, capped at 100 s
    assert (head.status, head.next_attempt_at, head.auto_retries, head.attempts) == (Status.PENDING, None, 3, 6)
    assert [(h.action, h.outcome) for h in head.history.all()] == [("auto_retry", "failed")] * 3
    follower.refresh_from_db()
    assert (follower.status, follower.blocked_by_id) == (Status.PENDING, head.pk)  # still parked behind it
    assert not Effect.objects.exists()


def test_a_non_retryable_failure_on_an_automatic_retry_makes_it_pending_at_once() -> None:
    head = retrying(1)
    Script.objects.create(scenario="broken", broken=True, non_retryable=True)
    make_due(head)
    deadletter_retry_due()
    head.refresh_from_db()
    assert (head.status, head.reason, head.next_attempt_at) == (Status.PENDING, DeadLetter.Reason.NON_RETRYABLE, None)


def test_a_successful_automatic_retry_releases_the_key_and_a_released_message_that_fails_is_retried_in_turn() -> None:
    Script.objects.create(scenario="other-broken", broken=True)
    head = retrying(1, scenario="")
    second = parked_dead_letter(2, head, scenario="other-broken")
    third = parked_dead_letter(3, head)
    make_due(head)

    assert deadletter_retry_due() == {"applied": 1}

    second.refresh_from_db()
    third.refresh_from_db()
    assert (second.status, second.blocked_by_id, second.next_attempt_at is not None) == (Status.RETRYING, None, True)
    assert third.blocked_by_id == second.pk
    assert effect_seqs() == [1]
    assert DeadLetter.objects.get(pk=head.pk).history.get().action == "auto_retry"


def test_an_operator_may_replay_or_discard_a_retrying_dead_letter_before_its_next_automatic_try() -> None:
    first, second = retrying(1, key="truck-1", scenario=""), retrying(2, key="truck-2")
    assert deadletter_replay(dead_letter_id=first.pk).outcome == Outcome.APPLIED
    deadletter_discard(dead_letter_id=second.pk, actor=None, reason="obsolete")
    assert list(DeadLetter.objects.order_by("id").values_list("status", "next_attempt_at")) == [
        (Status.REPLAYED, None), (Status.DISCARDED, None),
    ]
    make_due(second)
    assert deadletter_retry_due() == {}


def test_the_beat_task_runs_the_due_retries() -> None:
    from apps.consumers.tasks import retry_due_dead_letters

    make_due(retrying(1, scenario=""))
    assert retry_due_dead_letters.apply().result == {"applied": 1}


# --- background replays -----------------------------------------------------------------------------------------


def run_callbacks(callbacks: list) -> None:  # type: ignore[type-arg]
    """What the commit would have run (the Celery task, eager here)."""
    celery_app.conf.task_always_eager = True
    try:
        for callback in callbacks:
            callback()
    finally:
        celery_app.conf.task_always_eager = False


def test_background_replay_respects_the_replay_cap_and_leaves_nothing_replaying(
    settings: object, django_capture_on_commit_callbacks: object
) -> None:
    settings.CONSUMER_REPLAY_MAX_ATTEMPTS = 2  # type: ignore[attr-defined]
    Script.objects.create(scenario="broken", broken=True)
    at_cap, below = dead_letter(1, key="truck-1"), dead_letter(2, key="truck-2")
    for _ in range(2):
        deadletter_replay(dead_letter_id=at_cap.pk)
    deadletter_replay(dead_letter_id=below.pk)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
        queued = deadletter_queue_replay(dead_letter_ids=[at_cap.pk, below.pk], actor=None)
    assert queued == [below.pk]  # the one at the cap is not queued, exactly as a replay now would refuse it
    settings.CONSUMER_REPLAY_MAX_ATTEMPTS = 1  # type: ignore[attr-defined]  # reached while it waited
    run_callbacks(callbacks)

    assert list(DeadLetter.objects.order_by("id").values_list("status", flat=True)) == [Status.PENDING] * 2
    refused = DeadLetter.objects.get(pk=below.pk).history.last()
    assert (refused.action, refused.outcome) == ("replay", "refused")  # type: ignore[union-attr]
    assert handlers.attempts[below.event_id] == 1  # only the replay now ran the handler


def test_a_queued_replay_waiting_in_a_long_celery_queue_is_left_alone_by_the_sweep(
    django_capture_on_commit_callbacks: object
) -> None:
    head = dead_letter(1, scenario="")
    with django_capture_on_commit_callbacks(execute=False) as queued:  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[head.pk], actor=None)
    # An hour later its task still waits behind others in the Celery queue (it has not started).
    DeadLetter.objects.filter(pk=head.pk).update(replay_queued_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False) as swept:  # type: ignore[operator]
        assert deadletter_requeue_stale_replays() == 0
    assert not swept
    assert DeadLetter.objects.get(pk=head.pk).status == Status.REPLAYING

    run_callbacks(queued)  # its turn comes

    assert list(head.history.values_list("action", "outcome")) == [("queue", "queued"), ("replay", "applied")]
    assert effect_seqs() == [1]


def test_a_replay_whose_task_was_never_sent_is_queued_again_by_the_next_sweep_without_counting_a_failure(
    django_capture_on_commit_callbacks: object
) -> None:
    from apps.consumers.tasks import requeue_stale_replays

    head = dead_letter(1, scenario="")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[head.pk], actor=None)
    with mock.patch("apps.consumers.tasks.replay_dead_letters.delay", side_effect=OSError("Celery broker down")):
        with pytest.raises(OSError):
            callbacks[0]()  # Django's robust on_commit logs this; the caller's commit stands
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
        assert requeue_stale_replays.apply().result == 1  # at once: nothing is waiting for it
    run_callbacks(callbacks)

    head.refresh_from_db()
    assert head.status == Status.REPLAYED
    assert list(head.history.values_list("action", "outcome")) == [
        ("queue", "queued"), ("queue", "queued"), ("replay", "applied"),
    ]
    assert effect_seqs() == [1]


def test_a_replay_never_started_within_the_lost_bound_is_queued_again_without_counting_a_failure(
    settings: object, django_capture_on_commit_callbacks: object
) -> None:
    settings.CONSUMER_REPLAY_LOST_HOURS = 6  # type: ignore[attr-defined]
    head = dead_letter(1, scenario="")
    with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[head.pk], actor=None)  # its message is purged from the broker
    DeadLetter.objects.filter(pk=head.pk).update(replay_queued_at=timezone.now() - timedelta(hours=5))
    with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
        assert deadletter_requeue_stale_replays() == 0
    DeadLetter.objects.filter(pk=head.pk).update(replay_queued_at=timezone.now() - timedelta(hours=7))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
        assert deadletter_requeue_stale_replays() == 1
    run_callbacks(callbacks)

    head.refresh_from_db()
    assert head.status == Status.REPLAYED
    assert [o for _, o in head.history.values_list("action", "outcome")] == ["queued", "queued", "applied"]


def test_a_replay_whose_worker_died_after_it_started_counts_as_failed_and_is_queued_again(
    settings: object, django_capture_on_commit_callbacks: object
) -> None:
    head = dead_letter(1, scenario="")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[head.pk], actor=None)
    with mock.patch("apps.consumers.replay.apply_stored", side_effect=SystemExit("worker killed")):
        with pytest.raises(SystemExit):
            run_callbacks(callbacks)
    head.refresh_from_db()
    assert head.status == Status.REPLAYING and head.replay_started_at is not None  # recorded before it died
    with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
        assert deadletter_requeue_stale_replays() == 0  # not stale yet
    DeadLetter.objects.filter(pk=head.pk).update(replay_started_at=timezone.now() - timedelta(minutes=16))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
        assert deadletter_requeue_stale_replays() == 1
    run_callbacks(callbacks)

    head.refresh_from_db()
    assert head.status == Status.REPLAYED
    assert list(head.history.values_list("action", "outcome")) == [
        ("queue", "queued"), ("replay", "failed"), ("queue", "queued"), ("replay", "applied"),
    ]


def test_a_replay_task_past_its_time_budget_hands_the_rest_to_a_new_task(
    settings: object, django_capture_on_commit_callbacks: object
) -> None:
    from apps.consumers.tasks import replay_dead_letters

    settings.CONSUMER_REPLAY_TASK_BUDGET_S = 0  # type: ignore[attr-defined]
    heads = [dead_letter(seq, key=f"truck-{seq}", scenario="") for seq in (1, 2, 3)]
    with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[h.pk for h in heads], actor=None)
    request = ReplayRequest.objects.get()
    with mock.patch.object(replay_dead_letters, "delay") as delay:
        replay_dead_letters.apply(args=[request.pk, [h.pk for h in heads]])

    delay.assert_called_once_with(request.pk, [heads[1].pk, heads[2].pk])
    assert list(DeadLetter.objects.order_by("id").values_list("status", flat=True)) == [
        Status.REPLAYED, Status.REPLAYING, Status.REPLAYING,
    ]


def test_a_replay_whose_task_keeps_dying_ends_pending_after_the_replay_cap(
    settings: object, django_capture_on_commit_callbacks: object
) -> None:
    settings.CONSUMER_REPLAY_MAX_ATTEMPTS = 2  # type: ignore[attr-defined]
    head = dead_letter(1, scenario="")
    with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[head.pk], actor=None)
    statuses = []
    for _ in range(2):  # each re-queued task starts, then its worker dies before it finishes
        DeadLetter.objects.filter(pk=head.pk).update(replay_started_at=timezone.now() - timedelta(hours=1))
        with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
            deadletter_requeue_stale_replays()
        statuses.append(DeadLetter.objects.get(pk=head.pk).status)

    assert statuses == [Status.REPLAYING, Status.PENDING]
    outcomes = list(head.history.values_list("action", "outcome"))
    assert outcomes == [("queue", "queued"), ("replay", "failed"), ("queue", "queued"), ("replay", "failed")]
    with pytest.raises(ApplicationError, match="failed 2 replays"):
        deadletter_replay(dead_letter_id=head.pk)


# --- who a background replay is attributed to ----------------------------------------------------------------


def test_a_background_replay_is_attributed_to_who_queued_it(django_capture_on_commit_callbacks: object) -> None:
    operator = User.objects.create_user("ops")
    head = dead_letter(1, scenario="")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[head.pk], actor=operator)

    run_callbacks(callbacks)

    assert list(head.history.values_list("action", "actor__username")) == [("queue", "ops"), ("replay", "ops")]


def test_a_task_message_naming_a_user_attributes_nothing_to_them(django_capture_on_commit_callbacks: object) -> None:
    """Anyone who can write to the Celery broker can send `replay_dead_letters([ids], user_id)`, the message an
    earlier release sent: the replay runs, attributed to nobody, never to the user the message names."""
    from apps.consumers.tasks import replay_dead_letters

    User.objects.create_user("ops")
    intruder = User.objects.create_user("intruder")
    head = dead_letter(1, scenario="")
    with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[head.pk], actor=User.objects.get(username="ops"))

    replay_dead_letters.apply(args=[[head.pk], intruder.pk])

    entry = head.history.get(action="replay")
    assert (entry.outcome, entry.actor) == ("applied", None)


def test_a_replay_request_covers_only_the_dead_letters_it_was_made_for(
    django_capture_on_commit_callbacks: object
) -> None:
    from apps.consumers.tasks import replay_dead_letters

    mine, theirs = dead_letter(1, key="truck-1", scenario=""), dead_letter(2, key="truck-2", scenario="")
    with django_capture_on_commit_callbacks(execute=False):  # type: ignore[operator]
        deadletter_queue_replay(dead_letter_ids=[mine.pk], actor=User.objects.create_user("ops"))
        deadletter_queue_replay(dead_letter_ids=[theirs.pk], actor=None)
    request = ReplayRequest.objects.get(actor__username="ops")

    replay_dead_letters.apply(args=[request.pk, [theirs.pk]])  # a forged message: ops's request, another letter

    assert DeadLetter.objects.get(pk=theirs.pk).status == Status.REPLAYING
    assert not theirs.history.filter(action="replay").exists()
