"""Notices a consumer group that stopped moving: a partition with lag that no live consumer owns, or that this
member owns and receives nothing from.

A group can wedge without any process failing: after a broker pause interrupted a rebalance (a SyncGroup
request timed out mid-flight), members were seen polling happily for minutes with no partitions assigned, the
partitions' offsets standing still, every heartbeat fresh. Nothing in librdkafka gives up on that state, so a
member that sees it leaves the group and joins again as a new member (`GroupStalled`, raised out of `run_once`:
`run_worker` closes the consumer and sets up a fresh one after its backoff), which makes the coordinator run a
new rebalance. "Owned" means listed in a live consumer heartbeat of the group (apps.common.Heartbeat), so a
partition held by a member that is alive but not ours to see (a hung process still heartbeating to the broker)
is reported the same way: its lag stands, and rejoining is the one move that can shake it loose.

The second shape is a member that holds partitions and is fed nothing from them while they have lag: seen in
chaos runs after the broker was replaced by an empty one and a node was then killed (the member's fetch state for
those partitions never recovered, the partitions stayed assigned, so no one else could take them). A fresh
consumer starts its fetch state over; `OwnedIdleWatch` notices the member's own silent partitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

TopicPartitionId = tuple[str, int]


class GroupStalled(RuntimeError):
    """Partitions of the group have had lag and no owner for longer than the threshold: rejoin."""


@dataclass(frozen=True)
class Position:
    """Where the group stands on one partition: its committed offset (or the log start) and the high watermark."""

    topic: str
    partition: int
    committed: int
    high: int

    @property
    def lag(self) -> int:
        return max(0, self.high - self.committed)


@dataclass(frozen=True)
class Stall:
    topic: str
    partition: int
    lag: int
    seconds: float
    how: str = "unowned"

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] lag {self.lag} {self.how} for {self.seconds:.0f}s"


class UnownedLagWatch:
    """Remembers since when each partition has had lag, no owner and an unchanged committed offset."""

    def __init__(self, *, threshold_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold_s = threshold_s
        self._clock = clock
        self._since: dict[TopicPartitionId, tuple[float, int]] = {}

    def observe(self, positions: Iterable[Position], *, owned: set[TopicPartitionId]) -> list[Stall]:
        """The partitions that have stood, lagging and unowned, for at least the threshold. A partition that
        got an owner, caught up or moved starts its clock again."""
        now = self._clock()
        since: dict[TopicPartitionId, tuple[float, int]] = {}
        stalls = []
        for position in positions:
            key = (position.topic, position.partition)
            if position.lag <= 0 or key in owned:
                continue
            first, committed = self._since.get(key, (now, position.committed))
            if committed != position.committed:
                first = now
            since[key] = (first, position.committed)
            if now - first >= self.threshold_s:
                stalls.append(Stall(position.topic, position.partition, position.lag, now - first))
        self._since = since
        return stalls


class OwnedIdleWatch:
    """Remembers when each partition assigned to this member last gave it a message (or had nothing to give):
    a partition with lag that has given nothing for the threshold is a stall."""

    HOW = "assigned here, nothing fetched"

    def __init__(self, *, threshold_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold_s = threshold_s
        self._clock = clock
        self._fed_at: dict[TopicPartitionId, float] = {}

    def fed(self, partitions: Iterable[TopicPartitionId]) -> None:
        """Messages of these partitions reached the member."""
        now = self._clock()
        for key in partitions:
            self._fed_at[key] = now

    def observe(self, positions: Iterable[Position]) -> list[Stall]:
        """The member's partitions (`positions`: its assignment) lagging and unfed for at least the threshold;
        a partition caught up, or seen for the first time, starts its clock."""
        now = self._clock()
        fed_at: dict[TopicPartitionId, float] = {}
        stalls = []
        for position in positions:
            key = (position.topic, position.partition)
            since = now if position.lag <= 0 else self._fed_at.get(key, now)
            fed_at[key] = since
            if now - since >= self.threshold_s:
                stalls.append(Stall(position.topic, position.partition, position.lag, now - since, self.HOW))
        self._fed_at = fed_at
        return stalls
