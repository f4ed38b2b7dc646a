"""What the relay leaves alone for a while: a topic the broker refuses, a key whose rows timed out.

A refusal or a timeout used to slow the whole relay (one backoff for everything) and, since the rows it hit keep
the lowest ids, every claim took them first: one refused topic stopped all the others. Now each refused topic
(a refusal only a person can fix: an ACL, a deleted topic) and each key whose rows were not confirmed (a
partition without a leader, a timeout) is held with a backoff of its own, doubling from `initial` to `maximum`,
and claims skip what is held; a delivery on the topic or key ends its hold. Holds are this process's own: another
relay learns of a refusal from its own first try.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

TOPIC_WIDE = None  # the key of a hold on a whole topic


@dataclass
class _Hold:
    until: float
    delay: float


@dataclass(frozen=True)
class Held:
    """What a claim must skip: whole topics, single keys of other topics (as `(topic, key)`), and all but the
    first row of `probing` topics (refused before, their hold over: one row asks the broker again)."""

    topics: tuple[str, ...] = ()
    keys: tuple[tuple[str, str], ...] = ()
    probing: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.topics or self.keys or self.probing)


class Holds:
    def __init__(self, *, initial: float, maximum: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.initial = initial
        self.maximum = maximum
        self._clock = clock
        self._holds: dict[tuple[str, str | None], _Hold] = {}

    def hold(self, topic: str, key: str | None = TOPIC_WIDE) -> None:
        """Refused or unconfirmed again: hold it twice as long as last time (from `initial`, up to `maximum`)."""
        previous = self._holds.get((topic, key))
        delay = self.initial if previous is None else min(self.maximum, previous.delay * 2)
        self._holds[(topic, key)] = _Hold(until=self._clock() + delay, delay=delay)

    def release(self, topic: str, key: str) -> None:
        """A row of `key` on `topic` was delivered: neither the key nor the topic is held any longer."""
        self._holds.pop((topic, key), None)
        self._holds.pop((topic, TOPIC_WIDE), None)

    def active(self) -> Held:
        """What is held now. An expired hold keeps its delay, so a refusal that persists backs off further; an
        expired topic hold lets one row of the topic through to ask the broker again (a whole batch of rows that
        are likely refused again would cost every other topic a round)."""
        now = self._clock()
        # Long over and not refused again: forgotten, so a later refusal starts from `initial`.
        self._holds = {where: hold for where, hold in self._holds.items() if now - hold.until < self.maximum}
        current = [where for where, hold in self._holds.items() if hold.until > now]
        topics = tuple(sorted(topic for topic, key in current if key is TOPIC_WIDE))
        keys = tuple(sorted((t, k) for t, k in current if k is not TOPIC_WIDE and t not in topics))
        probing = tuple(sorted(t for t, k in self._holds if k is TOPIC_WIDE and t not in topics))
        return Held(topics, keys, probing)

    def seconds_to_next(self) -> float | None:
        """Until the earliest active hold ends (None: nothing held)."""
        now = self._clock()
        left = [hold.until - now for hold in self._holds.values() if hold.until > now]
        return min(left) if left else None

    def topics(self) -> set[str]:
        """Topics held as a whole, active or expired (the dashboard and logs name them)."""
        return {topic for topic, key in self._holds if key is TOPIC_WIDE}

    def clear(self) -> None:
        self._holds.clear()
