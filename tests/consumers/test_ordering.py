"""Per-aggregate order: scopes compared as bytes, a released message that fails becomes its scope's new head,
and rows parked by key before scopes existed keep their order per aggregate."""

from __future__ import annotations

import pytest

from apps.consumers.ledger import deadletter_record
from apps.consumers.models import DeadLetter
from apps.consumers.ordering import blocking_heads, deadletter_fill_scopes, parked_failure
from apps.consumers.replay import deadletter_replay
from tests.consumers.factories import dead_letter, parked_dead_letter
from tests.consumers.support import effect_seqs, happened, raw_message
from tests.consumers.testapp.models import Script

pytestmark = pytest.mark.django_db
Status = DeadLetter.Status


def test_released_message_that_fails_becomes_the_new_head_and_the_rest_wait_behind_it() -> None:
    Script.objects.create(scenario="broken", broken=False)
    Script.objects.create(scenario="other-broken", broken=True)
    head = dead_letter(1)
    second = parked_dead_letter(2, head, scenario="other-broken")
    third = parked_dead_letter(3, head)

    result = deadletter_replay(dead_letter_id=head.pk)

    assert (result.released, result.new_head) == ([], second.pk)
    second.refresh_from_db()
    third.refresh_from_db()
    assert (second.status, second.blocked_by_id, second.reason, second.attempts) == (
        Status.PENDING, None, DeadLetter.Reason.HANDLER_ERROR, 1,
    )
    assert (third.status, third.blocked_by_id) == (Status.PENDING, second.pk)
    assert effect_seqs() == [1]


def test_scopes_that_differ_only_in_undecodable_bytes_are_different_scopes_for_parking() -> None:
    head = dead_letter(1)
    DeadLetter.objects.filter(pk=head.pk).update(scope=b"\xff\xfe")
    assert blocking_heads(group="testing", scopes=[b"\xff\xfe", b"\xff\xfd"]) == {b"\xff\xfe": head.pk}


def legacy_follower(seq: int, head: DeadLetter, *, key: str, scenario: str = "") -> DeadLetter:
    """A message a release before scopes parked behind `head` because they shared a Kafka key: its own aggregate
    (for the test event, its key) may differ from the head's."""
    raw = raw_message(happened(key=key, scenario=scenario, seq=seq), offset=seq)
    return deadletter_record(group="testing", raw=raw, failure=parked_failure(head.pk), attempts=0,
                             blocked_by_id=head.pk)


def test_rows_parked_by_key_before_scopes_are_released_per_aggregate() -> None:
    """A follower of another aggregate that fails on release becomes its own aggregate's head: only that
    aggregate's later followers wait behind it, the head's own aggregate goes on."""
    Script.objects.create(scenario="broken", broken=False)
    Script.objects.create(scenario="other-broken", broken=True)
    head = dead_letter(1, key="truck-1")
    other_failing = legacy_follower(2, head, key="truck-2", scenario="other-broken")
    own = legacy_follower(3, head, key="truck-1")
    other_later = legacy_follower(4, head, key="truck-2")
    assert blocking_heads(group="testing", scopes=[b"truck-2"]) == {b"truck-2": head.pk}  # its order is kept

    result = deadletter_replay(dead_letter_id=head.pk)

    assert (result.released, result.new_head) == ([own.pk], other_failing.pk)
    rows = {row.pk: (row.status, row.blocked_by_id) for row in DeadLetter.objects.all()}
    assert rows[other_failing.pk] == (Status.PENDING, None)
    assert rows[other_later.pk] == (Status.PENDING, other_failing.pk)
    assert effect_seqs() == [1, 3]
    assert blocking_heads(group="testing", scopes=[b"truck-1", b"truck-2"]) == {b"truck-2": other_failing.pk}


def test_a_dead_letter_without_a_scope_is_replayed_under_the_scope_its_message_has() -> None:
    """Rows an older release wrote have no scope: a replay computes it (and so takes the consumer's lock)."""
    Script.objects.create(scenario="broken", broken=False)
    head = dead_letter(1, key="truck-1")
    follower = parked_dead_letter(2, head)
    DeadLetter.objects.update(scope=None)

    assert deadletter_fill_scopes(group="testing") == 2
    assert sorted(DeadLetter.objects.values_list("scope", flat=True)) == [b"truck-1", b"truck-1"]
    DeadLetter.objects.update(scope=None)
    result = deadletter_replay(dead_letter_id=head.pk)
    assert result.released == [follower.pk]
