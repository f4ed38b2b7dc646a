"""Recording dead letters: one row per message and group, failure groups, foreign bytes kept exactly."""

from __future__ import annotations

import uuid

import pytest

from apps.consumers.decoding import DecodeFailure, decode
from apps.consumers.inbox import stored_message
from apps.consumers.ledger import Failure, deadletter_record, fingerprint
from apps.consumers.models import DeadLetter, DeadLetterReplay
from apps.consumers.ordering import parked_failure
from apps.consumers.replay import deadletter_replay
from tests.consumers.support import cloud_event_headers, happened, raw_message
from tests.consumers.testapp import handlers
from tests.consumers.testapp.models import Script

pytestmark = pytest.mark.django_db
Outcome = DeadLetterReplay.Outcome


def test_a_redelivered_failure_updates_its_ledger_row_instead_of_adding_one() -> None:
    raw = raw_message(happened(seq=1), offset=1)
    first = deadletter_record(group="testing", raw=raw, failure=_failure(), attempts=3)
    again = deadletter_record(group="testing", raw=raw, failure=_failure(), attempts=3)
    assert again.pk == first.pk
    assert DeadLetter.objects.get().attempts == 6


def test_fingerprint_groups_messages_that_differ_only_in_ids_and_numbers() -> None:
    one = fingerprint(exception_class="E", handler="h", message=f"route 12 missing for {uuid.uuid4()} at 0xdeadbeef")
    two = fingerprint(exception_class="E", handler="h", message=f"route 977 missing for {uuid.uuid4()} at 0x1f")
    assert one == two
    assert one != fingerprint(exception_class="E", handler="other", message="route 12 missing")


# --- hostile bytes ----------------------------------------------------------------------------------------------


def test_the_ledger_keeps_key_and_header_bytes_exactly_and_replay_runs_the_message_with_them() -> None:
    Script.objects.create(scenario="broken", broken=True)
    event = happened(key="truck-1", scenario="broken", seq=1)
    headers = [*cloud_event_headers(event), ("x-note", b"a\x00b"), ("x-binary", b"\xff\xfe\x00"), ("x-null", None)]
    raw = raw_message(event, key=b"\x00\x00\x00\x07", headers=headers)  # type: ignore[arg-type]
    head = deadletter_record(group="testing", raw=raw, failure=Failure.from_exception(RuntimeError("x\x00y")),
                             attempts=1)
    follower_raw = raw_message(happened(key="truck-1", seq=2), offset=2, key=b"\x00\x00\x00\x07")
    follower = deadletter_record(group="testing", raw=follower_raw, failure=parked_failure(head.pk), attempts=0,
                                 blocked_by_id=head.pk)
    head.refresh_from_db()

    assert stored_message(head) == raw
    assert head.error_message == "x\\x00y"  # text columns get an escaped rendering, never a NUL
    Script.objects.filter(scenario="broken").update(broken=False)
    result = deadletter_replay(dead_letter_id=head.pk)

    assert (result.outcome, result.released) == (Outcome.APPLIED, [follower.pk])
    assert handlers.seen_keys == {head.event_id: b"\x00\x00\x00\x07", follower.event_id: b"\x00\x00\x00\x07"}


# --- a message keeps its identity, wherever it lands ------------------------------------------------------------


def _failure() -> Failure:
    return Failure.from_exception(RuntimeError("boom"), handler="tests.handler")


def test_one_event_has_one_ledger_row_whatever_offsets_it_arrived_at() -> None:
    """The amnesia re-publish sends an event again at a new offset: it is the same message."""
    event, event_id = happened(seq=1), uuid.uuid4()
    first = deadletter_record(group="testing", raw=raw_message(event, event_id=event_id, offset=7), failure=_failure(),
                              attempts=1)
    again = deadletter_record(group="testing", raw=raw_message(event, event_id=event_id, offset=0), failure=_failure(),
                              attempts=1)
    assert again.pk == first.pk
    assert list(DeadLetter.objects.values_list("event_id", "offset", "attempts")) == [(event_id, 7, 2)]


def test_a_different_event_at_an_old_dead_letters_position_gets_a_row_of_its_own() -> None:
    """A rebuilt broker numbers its offsets from zero again: a position names a place, not a message."""
    old = deadletter_record(group="testing", raw=raw_message(happened(seq=1), offset=3), failure=_failure(), attempts=1)
    new = deadletter_record(group="testing", raw=raw_message(happened(seq=2), offset=3), failure=_failure(), attempts=1)
    assert new.pk != old.pk
    assert DeadLetter.objects.filter(offset=3).count() == 2


def test_a_message_without_an_event_id_is_known_by_its_bytes() -> None:
    headers: list[tuple[str, bytes | None]] = [("x-source", b"legacy")]

    def garbage(value: bytes, offset: int) -> DeadLetter:
        raw = raw_message(happened(), offset=offset, value=value, headers=headers, key=b"legacy-1")  # type: ignore[arg-type]
        return deadletter_record(group="testing", raw=raw, failure=_failure(), attempts=1)

    first = garbage(b"not an event", 3)
    assert garbage(b"not an event", 0).pk == first.pk  # the same bytes at a new offset
    assert garbage(b"another one", 3).pk != first.pk  # other bytes at the old offset
    assert DeadLetter.objects.count() == 2


# --- failure groups from producer text (issue 21: metrics cardinality) --------------------------------------------


def _junk(i: int) -> str:
    """A distinct value with no digits (the id-and-number rules alone would not merge these)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "x" + letters[i % 26] + letters[i // 26 % 26] + letters[i // 676 % 26]


def test_two_hundred_distinct_bad_specversions_make_one_failure_group() -> None:
    for i in range(200):
        event = happened(seq=i)
        headers = [(name, _junk(i).encode() if name == "ce_specversion" else value)
                   for name, value in cloud_event_headers(event)]
        raw = raw_message(event, headers=headers, offset=i)
        with pytest.raises(DecodeFailure) as refused:
            decode(raw, group="testing")
        deadletter_record(group="testing", raw=raw, failure=Failure.from_exception(refused.value), attempts=1)
    assert DeadLetter.objects.count() == 200
    assert DeadLetter.objects.values("fingerprint").distinct().count() == 1


def test_payloads_invalid_only_in_their_input_values_make_one_failure_group_per_kind_of_error() -> None:
    for i in range(100):
        junk = f'"{_junk(i)}"' if i % 2 else f'{{"{_junk(i)}": ["{_junk(i)}"]}}'  # a string, then an object
        value = f'{{"key": "k1", "scenario": "", "seq": {junk}}}'.encode()
        raw = raw_message(happened(seq=i), value=value, offset=i)
        with pytest.raises(DecodeFailure) as refused:
            decode(raw, group="testing")
        deadletter_record(group="testing", raw=raw, failure=Failure.from_exception(refused.value), attempts=1)
    assert DeadLetter.objects.values("fingerprint").distinct().count() == 2  # not a number; not even a string


def test_fingerprint_ignores_quoted_text_but_keeps_the_shape_of_the_message() -> None:
    one = fingerprint(exception_class="E", handler="h", message="unsupported ce_specversion 'abc'")
    two = fingerprint(exception_class="E", handler="h", message='unsupported ce_specversion "it\'s"')
    assert one == two
    assert one != fingerprint(exception_class="E", handler="h", message="unsupported content-type 'abc'")
