"""One batch: the rows of a claim handed to the producer, what the broker said about each, and what to record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message

from apps.outbox.relay import claims
from apps.outbox.relay.ordering import FAILED, FINAL, PENDING, PUBLISHED, KeyOrder
from apps.outbox.relay.verdicts import Report, Verdict, reason, verdict

BEHIND_UNCONFIRMED = "delivered, but an earlier row of its key was not confirmed: sent again after it"


class Batch:
    """Filled by the claim, then by delivery callbacks (producer.poll, on the relay's one thread)."""

    def __init__(self, seq: int, connection: Any) -> None:
        self.seq = seq
        self.connection = connection  # psycopg connection whose open transaction holds the claim's locks
        self.claimed = 0
        self.held_back = 0
        # Per sent row: its id, the earlier row of its key it must not overtake, its topic (metrics), its topic
        # on the cluster (KAFKA_TOPIC_PREFIX included: problems, broker marks), its event id, its ce_time (the
        # row's creation, RFC 3339: delivery latency) and its traceparent (logs).
        self.ids: list[int] = []
        self.previous: list[int | None] = []
        self.topics: list[str] = []
        self.keys: list[str] = []
        self.cluster_topics: list[str] = []
        self.event_ids: list[str] = []
        self.times: list[str] = []
        self.traceparents: list[str] = []
        self.tails: dict[tuple[str, str], int] = {}  # per (topic, key) sent in this batch, its last row
        self.reports: list[Report] = []
        self._settled = 0
        self._sealed = False

    def add(
        self, row_id: int, previous_id: int | None, *, topic: str, key: str, cluster_topic: str, event_id: str,
        time: str, traceparent: str,
    ) -> int:
        self.ids.append(row_id)
        self.previous.append(previous_id)
        self.topics.append(topic)
        self.keys.append(key)
        self.cluster_topics.append(cluster_topic)
        self.event_ids.append(event_id)
        self.times.append(time)
        self.traceparents.append(traceparent)
        self.reports.append(None)
        return len(self.ids) - 1

    def report(self, slot: int, error: KafkaError | None, message: Message) -> None:
        """Delivery callback."""
        # A delivered message has its partition and offset (the client types them `int | None` for any message).
        self.reports[slot] = error if error is not None else (message.partition(), message.offset())  # type: ignore[assignment]
        self._settle()

    def refuse_now(self, slot: int, error: KafkaError) -> None:
        """`produce()` itself refused the message: no delivery report will come."""
        self.reports[slot] = error
        self._settle()

    def seal(self) -> None:
        self._sealed = True

    @property
    def complete(self) -> bool:
        return self._sealed and self._settled >= len(self.ids)

    def _settle(self) -> None:
        self._settled += 1


@dataclass
class Record:
    """What a finished batch writes, and the outcome of each sent row."""

    outcomes: dict[int, str] = field(default_factory=dict)
    published: list[claims.Delivered] = field(default_factory=list)
    failed: list[claims.Refused] = field(default_factory=list)
    failed_slots: list[int] = field(default_factory=list)
    retried: list[claims.Refused] = field(default_factory=list)
    problems: dict[tuple[str, str], list] = field(default_factory=dict)  # (error name, topic) -> [rows, message]
    acked: dict[tuple[str, int], list] = field(default_factory=dict)  # (topic, partition) -> [low, high, event id]
    # For the relay's holds (apps.outbox.relay.holds), by outbox topic: refused topics, keys not confirmed, and
    # keys delivered (which ends their holds).
    refused_topics: set[str] = field(default_factory=set)
    unconfirmed_keys: set[tuple[str, str]] = field(default_factory=set)
    delivered_keys: set[tuple[str, str]] = field(default_factory=set)
    unconfirmed: int = 0  # rows the broker did not confirm (timeouts, no report): not refusals a person must fix


def decide(batch: Batch, order: KeyOrder) -> Record:
    """Each sent row's outcome from its report; a row never overtakes an unconfirmed predecessor of its key."""
    record = Record()
    outcomes = record.outcomes
    for slot, (row_id, previous_id, report) in enumerate(zip(batch.ids, batch.previous, batch.reports, strict=True)):
        said = verdict(report)
        if previous_id is not None and order.outcome(previous_id, this_batch=outcomes) not in FINAL:
            # Delivered or not, it went out behind a row that must be sent again: send it again too,
            # after that one, so the last copies on the topic are in order.
            outcomes[row_id] = PENDING
            if said is Verdict.DELIVERED:
                record.retried.append(claims.Refused(row_id, BEHIND_UNCONFIRMED))
        elif said is Verdict.DELIVERED:
            assert isinstance(report, tuple)
            outcomes[row_id] = PUBLISHED
            partition, offset = report
            record.published.append(claims.Delivered(row_id, partition, offset))
            record.delivered_keys.add((batch.topics[slot], batch.keys[slot]))
            where = (batch.cluster_topics[slot], partition)
            span = record.acked.get(where)
            if span is None:
                record.acked[where] = [offset, offset, batch.event_ids[slot]]
            elif offset > span[1]:
                span[1], span[2] = offset, batch.event_ids[slot]
            elif offset < span[0]:
                span[0] = offset
        elif said is Verdict.REFUSED_FOR_GOOD:
            outcomes[row_id] = FAILED
            record.failed.append(claims.Refused(row_id, reason(report)))
            record.failed_slots.append(slot)
        elif said is Verdict.NOT_SENT:
            outcomes[row_id] = PENDING  # the producer failed, not the send: no attempt to count
        else:
            outcomes[row_id] = PENDING
            record.retried.append(claims.Refused(row_id, reason(report)))
            if said is Verdict.NEEDS_A_PERSON:
                assert isinstance(report, KafkaError)
                problem = record.problems.setdefault((report.name(), batch.cluster_topics[slot]), [0, reason(report)])
                problem[0] += 1
                record.refused_topics.add(batch.topics[slot])
            else:
                record.unconfirmed_keys.add((batch.topics[slot], batch.keys[slot]))
                record.unconfirmed += 1
    return record
