"""The chaos run's fault schedule and hostile messages (the run itself is `make chaos`, not a test)."""

from __future__ import annotations

import pytest

from apps.consumers.decoding import DecodeFailure, RawMessage, decode
from chaos.faults import KINDS, schedule
from chaos.hostile import KINDS as HOSTILE_KINDS
from chaos.hostile import TOPICS, hostile_message


def test_a_seed_always_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule(7, 600) == schedule(7, 600)
    assert schedule(7, 600) != schedule(8, 600)


@pytest.mark.parametrize("seed", range(20))
def test_a_short_run_sees_every_fault_kind_and_one_broker_pause_at_a_time_ending_in_time(seed: int) -> None:
    faults = schedule(seed, 180)

    assert {fault.kind for fault in faults} == set(KINDS)
    pauses = [(fault.at, fault.at + fault.seconds) for fault in faults if fault.kind == "pause_broker"]
    assert all(end <= 180 for _, end in pauses)
    assert all(later_start >= end for (_, end), (later_start, _) in zip(pauses, pauses[1:]))


def test_a_run_narrowed_to_some_kinds_injects_only_those_and_an_unknown_kind_is_refused() -> None:
    assert {fault.kind for fault in schedule(3, 600, ("kill_relay", "pause_broker"))} == {"kill_relay", "pause_broker"}
    with pytest.raises(ValueError, match="kill_everything"):
        schedule(3, 600, ("kill_everything",))


@pytest.mark.parametrize("topic", sorted(TOPICS))
@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_every_hostile_message_is_one_its_group_must_dead_letter(kind: str, topic: str) -> None:
    """Neither applied nor skipped: so `hostile_in_ledger` must equal `hostile_injected`."""
    key, value, headers = hostile_message(kind, topic, serial=1)
    group = TOPICS[topic][0]
    raw = RawMessage(topic=topic, partition=0, offset=0, key=key, value=value, headers=headers)

    with pytest.raises(DecodeFailure):
        decode(raw, group=group)
