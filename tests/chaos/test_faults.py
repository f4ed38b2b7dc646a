"""The chaos run's fault schedule and hostile messages (the run itself is `make chaos`, not a test)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from apps.consumers.decoding import DecodeFailure, RawMessage, decode
from chaos import faults as faults_module
from chaos.faults import (
    BROKER_KINDS,
    KINDS,
    NODE_SETTLE_S,
    REFUSE_S,
    REFUSE_SETTLE_S,
    REPLACE_SETTLE_S,
    Fault,
    FaultRunner,
    runnable_kinds,
    schedule,
)
from chaos.hostile import KINDS as HOSTILE_KINDS
from chaos.hostile import TOPICS, hostile_message
from chaos.refusal import Window


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
            "replace_broker": lambda f: REPLACE_SETTLE_S, "refuse_topic": lambda f: f.seconds + REFUSE_SETTLE_S}
    spans = [(fault.at, fault.at + busy[fault.kind](fault))
             for fault in schedule(seed, 600) if fault.kind in BROKER_KINDS]

    assert all(later_start >= end for (_, end), (later_start, _) in zip(spans, spans[1:], strict=False))


def test_a_single_broker_skips_the_cluster_fault_with_its_reason_and_is_still_replaced() -> None:
    kinds, skipped = runnable_kinds(KINDS, broker="tansu", kafka_nodes=3)
    assert "kill_broker" not in kinds and "replace_broker" in kinds
    assert skipped == {"kill_broker": "tansu is one node: no other broker to fail over to",
                       "refuse_topic": "tansu has no authorizer to refuse a topic with"}

    kinds, skipped = runnable_kinds(KINDS, broker="kafka", kafka_nodes=1)
    assert "kill_broker" not in kinds and "CHAOS_KAFKA_NODES" in skipped["kill_broker"]

    assert runnable_kinds(KINDS, broker="kafka", kafka_nodes=3) == (KINDS, {})
    assert "refuse_topic" in runnable_kinds(KINDS, broker="kafka", kafka_nodes=1)[0]
    assert {fault.kind for fault in schedule(5, 180, runnable_kinds(KINDS, broker="tansu", kafka_nodes=3)[0])} == (
        set(KINDS) - {"kill_broker", "refuse_topic"}
    )


@pytest.mark.parametrize("seed", range(20))
def test_a_short_run_sees_every_fault_kind_and_one_broker_pause_at_a_time_ending_in_time(seed: int) -> None:
    faults = schedule(seed, 180)

    assert {fault.kind for fault in faults} == set(KINDS)
    pauses = [(fault.at, fault.at + fault.seconds) for fault in faults if fault.kind == "pause_broker"]
    assert all(end <= 180 for _, end in pauses)
    assert all(later_start >= end for (_, end), (later_start, _) in zip(pauses, pauses[1:], strict=False))


@pytest.mark.parametrize("seed", range(20))
def test_a_short_run_refuses_invoicing_events_and_lifts_each_refusal_before_the_end(seed: int) -> None:
    """invoicing.events: routing.events has traffic of its own while it is refused (an invoice follows a route)."""
    refusals = [fault for fault in schedule(seed, 180) if fault.kind == "refuse_topic"]

    assert refusals and {fault.target for fault in refusals} == {"invoicing.events"}
    assert all(REFUSE_S[0] <= fault.seconds <= REFUSE_S[1] and fault.at + fault.seconds <= 180 for fault in refusals)


class RefusingStack:
    """The stack as far as refuse_topic touches it: the calls, in order; `lift_failures` lifts fail first."""

    database_url = "postgresql://unused"

    def __init__(self, *, lift_failures: int = 0, refusal_shown: bool = True) -> None:
        self.calls: list[str] = []
        self.lift_failures = lift_failures
        self.refusal_shown = refusal_shown

    def refuse_topic(self, topic: str) -> None:
        self.calls.append(f"refuse {topic}")
        if not self.refusal_shown:
            raise TimeoutError("the broker did not enforce the new ACLs within 30s")

    def lift_refusal(self, topic: str) -> None:
        if self.lift_failures:
            self.lift_failures -= 1
            self.calls.append(f"lift {topic} failed")
            raise TimeoutError("the broker still shows the denial")
        self.calls.append(f"lift {topic}")

    def resume_broker(self) -> None:
        pass


class NoInjector:
    def poll(self) -> None:
        pass


@pytest.fixture
def windows_read(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """read_window's arguments, each time a lifted refusal is read (the reading itself: test_checks)."""
    read: list[dict[str, Any]] = []

    def read_window(conn: object, **where: Any) -> Window:
        read.append(where)
        where = {name: value for name, value in where.items() if name != "lifting"}
        return Window(**where, other_created=0, other_published=0, other_due=0, other_on_time=0, invoices_issued=0,
                      refused_published=0)

    monkeypatch.setattr(faults_module.psycopg, "connect", lambda *args, **kwargs: contextlib.nullcontext())
    monkeypatch.setattr(faults_module, "read_window", read_window)
    return read


def run_refusal(stack: RefusingStack, *, seconds: float, run_for: float) -> FaultRunner:
    refusal = Fault(0.0, "refuse_topic", "invoicing.events", seconds)
    runner = FaultRunner(stack, NoInjector(), [refusal])  # type: ignore[arg-type]
    started = time.monotonic()
    runner.run(started=started, until=started + run_for)
    return runner


def test_a_refused_topic_is_lifted_after_its_seconds_and_its_window_read_from_denial_to_lift(
    windows_read: list[dict[str, Any]],
) -> None:
    stack = RefusingStack()

    runner = run_refusal(stack, seconds=0.1, run_for=1.0)

    assert stack.calls == ["refuse invoicing.events", "lift invoicing.events"]
    assert runner.counts["refuse_topic"] == 1 and len(runner.windows) == 1
    (window,) = windows_read
    assert (window["topic"], window["other"]) == ("invoicing.events", "routing.events")
    assert window["started"] <= window["lifting"] <= window["ended"]


def test_a_lift_the_broker_did_not_take_is_tried_again_and_a_refusal_still_on_at_the_end_is_lifted(
    windows_read: list[dict[str, Any]],
) -> None:
    stack = RefusingStack(lift_failures=1)

    run_refusal(stack, seconds=60.0, run_for=0.5)  # the run ends long before the refusal would

    assert stack.calls == ["refuse invoicing.events", "lift invoicing.events failed", "lift invoicing.events"]
    assert len(windows_read) == 1


def test_a_refusal_the_broker_did_not_show_in_time_is_lifted_all_the_same_and_counts_as_not_measured(
    windows_read: list[dict[str, Any]],
) -> None:
    stack = RefusingStack(refusal_shown=False)

    runner = run_refusal(stack, seconds=0.1, run_for=1.0)

    assert stack.calls == ["refuse invoicing.events", "lift invoicing.events"]
    assert runner.counts["refuse_topic"] == 1 and runner.windows == [] and windows_read == []


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
