"""Per-key order: heads compared as bytes, and a released message that fails becomes the key's new head."""

from __future__ import annotations

import pytest

from apps.consumers.models import DeadLetter
from apps.consumers.ordering import blocking_heads
from apps.consumers.replay import deadletter_replay
from tests.consumers.factories import dead_letter, parked_dead_letter
from tests.consumers.support import effect_seqs
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


def test_keys_that_differ_only_in_undecodable_bytes_are_different_keys_for_parking() -> None:
    head = dead_letter(1)
    DeadLetter.objects.filter(pk=head.pk).update(key=b"\xff\xfe")
    assert blocking_heads(group="testing", keys=[b"\xff\xfe", b"\xff\xfd"]) == {b"\xff\xfe": head.pk}
