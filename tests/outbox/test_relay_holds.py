"""The relay's holds: a refused topic or an unconfirmed key waits with a backoff of its own; a delivery frees it."""

from __future__ import annotations

from apps.outbox.relay.holds import Held, Holds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_hold_doubles_while_the_refusal_persists_and_ends_at_its_time() -> None:
    clock = Clock()
    holds = Holds(initial=0.5, maximum=2.0, clock=clock)

    holds.hold("invoicing.events")
    assert holds.active() == Held(topics=("invoicing.events",))
    clock.now += 0.5
    assert holds.active() == Held(probing=("invoicing.events",))  # over: the next claim tries one row again
    holds.hold("invoicing.events")  # refused again
    assert holds.seconds_to_next() == 1.0
    holds.hold("invoicing.events")
    holds.hold("invoicing.events")
    assert holds.seconds_to_next() == 2.0  # never above the maximum


def test_a_delivery_frees_the_key_and_its_topic_and_other_keys_stay_held() -> None:
    holds = Holds(initial=1.0, maximum=30.0, clock=Clock())
    holds.hold("routing.events", "truck:1")
    holds.hold("routing.events", "truck:2")
    holds.hold("invoicing.events")

    holds.release("routing.events", "truck:1")
    holds.release("invoicing.events", "route:7")

    assert holds.active() == Held(keys=(("routing.events", "truck:2"),))


def test_a_key_of_a_held_topic_is_not_listed_twice_and_a_long_quiet_hold_is_forgotten() -> None:
    clock = Clock()
    holds = Holds(initial=1.0, maximum=4.0, clock=clock)
    holds.hold("routing.events")
    holds.hold("routing.events", "truck:1")
    assert holds.active() == Held(topics=("routing.events",))

    clock.now += 10  # past its end by more than the maximum: a later refusal starts from the initial delay
    assert not holds.active()
    holds.hold("routing.events")
    assert holds.seconds_to_next() == 1.0


def test_a_topic_whose_hold_ended_is_tried_with_one_row_until_a_delivery_frees_it() -> None:
    clock = Clock()
    holds = Holds(initial=1.0, maximum=30.0, clock=clock)
    holds.hold("invoicing.events")
    assert holds.active() == Held(topics=("invoicing.events",))

    clock.now += 1.0
    assert holds.active() == Held(probing=("invoicing.events",))  # one row tries the broker again
    holds.hold("invoicing.events")  # refused again: held, twice as long
    assert holds.active() == Held(topics=("invoicing.events",))
    clock.now += 2.0
    assert holds.active() == Held(probing=("invoicing.events",))

    holds.release("invoicing.events", "route:7")  # it got through: the whole topic flows again
    assert not holds.active()
