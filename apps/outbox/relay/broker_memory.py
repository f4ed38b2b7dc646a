"""Does the Kafka cluster still hold what it acknowledged? The relay's check against broker amnesia.

The relay keeps a few marks (BrokerMark): per partition, the highest offset it saw acknowledged, the event
that landed there, and the cluster's id. A mark is lost when the cluster id changed (a rebuilt cluster), the
topic or partition is gone, or reading the partition at the mark's offset does not return that event (the log
was emptied: Tansu restarted with empty memory, a cluster lost its disks). This module only reads the broker;
apps.outbox.services re-queues what the lost cluster had.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from apps.common.kafka import client_config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mark:
    topic: str  # as on the cluster (KAFKA_TOPIC_PREFIX included)
    partition: int
    offset: int
    event_id: uuid.UUID
    cluster_id: str


@dataclass
class Findings:
    cluster_id: str | None = None
    lost: list[tuple[Mark, str]] = field(default_factory=list)  # (mark, why)
    stale: list[Mark] = field(default_factory=list)  # gone by retention or compaction: not evidence, replace it
    unreachable: str | None = None  # the broker could not be asked: nothing is known
    # Marks on partitions that could not be read (no leader, no answer): only their partitions are unknown.
    unreadable: list[Mark] = field(default_factory=list)
    partitions: dict[str, int] = field(default_factory=dict)  # topic (as on the cluster) -> partition count


def examine(producer: Producer, marks: list[Mark], *, timeout: float) -> Findings:
    """Which marks the cluster behind `producer` no longer holds. Reads one message per mark, at most `timeout`."""
    findings = Findings()
    try:
        metadata = producer.list_topics(timeout=timeout)
    except KafkaException as error:
        findings.unreachable = str(error)
        return findings
    findings.cluster_id = metadata.cluster_id
    findings.partitions = {name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.partitions}
    to_read: list[Mark] = []
    for mark in marks:
        topic = metadata.topics.get(mark.topic)
        if mark.cluster_id and metadata.cluster_id and mark.cluster_id != metadata.cluster_id:
            findings.lost.append((mark, f"cluster id {mark.cluster_id} became {metadata.cluster_id}"))
        elif topic is None or topic.error is not None or mark.partition not in topic.partitions:
            findings.lost.append((mark, f"{mark.topic}[{mark.partition}] no longer exists"))
        elif topic.partitions[mark.partition].leader < 0:
            findings.unreadable.append(mark)  # no leader now: ask again later, the other partitions go on
        else:
            to_read.append(mark)
    if to_read:
        _read_at_marks(to_read, findings, timeout=timeout)
    return findings


def _read_at_marks(marks: list[Mark], findings: Findings, *, timeout: float) -> None:
    """Fetch the message at each mark's offset and compare its ce_id with the mark's event."""
    waiting = {(m.topic, m.partition): m for m in marks}
    consumer = Consumer(
        client_config(
            principal="relay",
            **{
                "group.id": "logiflow-relay-memory-check",  # never joined (assign only), never committed
                "enable.auto.commit": False,
                "auto.offset.reset": "error",  # an offset the log no longer has is an answer, not a reset
                "enable.partition.eof": True,
            }
        )
    )
    try:
        consumer.assign([TopicPartition(m.topic, m.partition, m.offset) for m in marks])
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is None or (topic := message.topic()) is None or (partition := message.partition()) is None:
                continue
            mark = waiting.get((topic, partition))
            if mark is None:
                continue
            verdict = _verdict(consumer, mark, message, timeout=timeout)
            if verdict is None:
                continue
            del waiting[(mark.topic, mark.partition)]
            if verdict == "stale":
                findings.stale.append(mark)
            elif verdict != "held":
                findings.lost.append((mark, verdict))
        for mark in waiting.values():  # no answer in time: does the log even reach the mark's offset?
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(mark.topic, mark.partition), timeout=timeout)
            except KafkaException:
                findings.unreadable.append(mark)  # this partition alone is unknown (no leader, no answer)
                continue
            if high <= mark.offset:
                why = f"{mark.topic}[{mark.partition}] ends at {high}, before offset {mark.offset}"
                findings.lost.append((mark, why))
    except KafkaException as error:
        findings.unreachable = str(error)
    finally:
        consumer.close()


def _verdict(consumer: Consumer, mark: Mark, message: Message, *, timeout: float) -> str | None:
    """'held', 'stale', a reason the mark is lost, or None (not an answer about this mark)."""
    where = f"{mark.topic}[{mark.partition}]"
    error = message.error()
    if error is None:
        if (message.offset() or 0) > mark.offset:  # a fetched message always has its offset
            return "stale"  # compacted away; later messages are there
        ce_id = dict(message.headers() or []).get("ce_id", b"")
        if ce_id == str(mark.event_id).encode():
            return "held"
        return f"{where} offset {mark.offset} holds another message than event {mark.event_id}"
    if error.code() == KafkaError._PARTITION_EOF:
        return f"{where} ends at {message.offset()}, before offset {mark.offset}"
    if error.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET):
        low, high = consumer.get_watermark_offsets(TopicPartition(mark.topic, mark.partition), timeout=timeout)
        if mark.offset < low:
            return "stale"  # retention deleted it
        return f"{where} has offsets {low}..{high}, not {mark.offset}"
    return None


class AckedOffsets:
    """What this process saw the cluster acknowledge: the highest offset per partition (a lower one later means
    the log was reset under us) and when each partition's mark was last written (at most once per interval)."""

    def __init__(self, *, mark_interval: float) -> None:
        self.mark_interval = mark_interval
        self._high: dict[tuple[str, int], int] = {}
        self._marked_at: dict[tuple[str, int], float] = {}

    def note(self, acked: dict[tuple[str, int], list], *, now: float) -> tuple[list[tuple[str, int, int, str]], bool]:
        """`acked`: per (topic, partition), [lowest offset, highest offset, event id at the highest].

        Returns the marks due to be written `(topic, partition, offset, event_id)`, and whether an offset went
        backwards (check the marks at once).
        """
        due: list[tuple[str, int, int, str]] = []
        reset = False
        for where, (low, high, event_id) in acked.items():
            seen = self._high.get(where)
            if seen is not None and low <= seen:
                logger.warning("relay: %s[%s] acknowledged offset %s after %s: checking the broker", *where, low, seen)
                reset = True
            # After a reset the new log's offsets are the ones to compare with: checking once is enough (another
            # relay may already have re-queued; each later ack must not force a check again).
            if seen is None or high > seen or low <= seen:
                self._high[where] = high
            if now - self._marked_at.get(where, -1e18) >= self.mark_interval:
                self._marked_at[where] = now
                due.append((where[0], where[1], high, event_id))
        return due, reset

    def unwritten(self, marks: list[tuple[str, int, int, str]]) -> None:
        """Writing these marks failed: they are due again with the next acknowledgement."""
        for topic, partition, _offset, _event_id in marks:
            self._marked_at.pop((topic, partition), None)

    def forget(self) -> None:
        self._high.clear()
        self._marked_at.clear()
