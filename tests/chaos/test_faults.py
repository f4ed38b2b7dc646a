"""The chaos run's fault schedule and hostile messages (the run itself is `make chaos`, not a test)."""

from __future__ import annotations

import pytest

from apps.consumers.decoding import DecodeFailure, RawMessage, decode
from chaos.faults import BROKER_KINDS, KINDS, NODE_SETTLE_S, REPLACE_SETTLE_S, runnable_kinds, schedule
from chaos.hostile import KINDS as HOSTILE_KINDS
from chaos.hostile import TOPICS, hostile_message


def test_a_seed_always_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule(7, 600) == schedule(7, 600)
    assert schedule(7, 600) != schedule(8, 600)
    assert {"replace_broker", "kill_broker"} <= {fault.kind for fault in schedule(7, 600)}


@pytest.mark.parametrize("seed", range(20))
def test_every_kind_comes_once_early_the_broker_replaced_and_a_node_killed_among_them(seed: int) -> None:
    faults = schedule(seed, 180)

    early = [fault.kind for fault in faults[:len(KINDS) + 2]]  # two slots of slack: a busy broker defers its kinds
    assert {"replace_broker", "kill_broker"} <= set(early)
    for fault in faults:
        if fault.kind == "kill_broker":
            assert fault.target in {"1", "2", "3"} and 3 <= fault.seconds <= 10


@pytest.mark.parametrize("seed", range(20))
def test_broker_faults_never_overlap_and_each_has_time_to_recover(seed: int) -> None:
    busy = {"pause_broker": lambda f: f.seconds, "kill_broker": lambda f: f.seconds + NODE_SETTLE_S,
            "replace_broker": lambda f: REPLACE_SETTLE_S}
    spans = [(fault.at, fault.at + busy[fault.kind](fault))
             for fault in schedule(seed, 600) if fault.kind in BROKER_KINDS]

    assert all(later_start >= end for (_, end), (later_start, _) in zip(spans, spans[1:], strict=False))


def test_a_single_broker_skips_the_cluster_fault_with_its_reason_and_is_still_replaced() -> None:
    kinds, skipped = runnable_kinds(KINDS, broker="tansu", kafka_nodes=3)
    assert "kill_broker" not in kinds and "replace_broker" in kinds
    assert skipped == {"kill_broker": "tansu is one node: no other broker to fail over to"}

    kinds, skipped = runnable_kinds(KINDS, broker="kafka", kafka_nodes=1)
    assert "kill_broker" not in kinds and "CHAOS_KAFKA_NODES" in skipped["kill_broker"]

    assert runnable_kinds(KINDS, broker="kafka", kafka_nodes=3) == (KINDS, {})
    assert {fault.kind for fault in schedule(5, 180, runnable_kinds(KINDS, broker="tansu", kafka_nodes=3)[0])} == (
        set(KINDS) - {"kill_broker"}
    )


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
