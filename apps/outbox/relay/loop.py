"""The relay's loop: one thread keeps the broker busy while the database works.

A batch is one transaction on one of `OUTBOX_RELAY_PIPELINE_DEPTH` connections: claim rows (locked), produce them,
wait for every delivery report, record the outcome of each row and commit, in one round trip (psycopg's pipeline
mode). With a depth of 2, batch N+1 is claimed and produced while N's delivery reports arrive (librdkafka sends on
its own threads; its callbacks run here, in `producer.poll`), then N is recorded. Claims and commits happen in
batch order, so within a key the producer sees rows in id order and commits land in id order.
The guarantees are argued in docs/architecture.md ("Outbox and relay").
"""

from __future__ import annotations

import logging
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from apps.common.kafka import ConnectivityLog, producer_config
from apps.common.metrics import (
    RELAY_BATCH_SECONDS,
    RELAY_DELIVERY_LATENCY,
    RELAY_ROWS_FAILED,
    RELAY_ROWS_PUBLISHED,
    RELAY_ROWS_RETRIED,
)
from apps.common.models import Heartbeat
from apps.common.tracing import otel_enabled, resumed, send_span
from apps.common.workers import Backoff, HeartbeatRecorder, Worker
from apps.outbox.models import cloudevents_headers
from apps.outbox.relay import broker_memory, claims
from apps.outbox.relay.batch import Batch, Record, decide
from apps.outbox.relay.holds import Holds
from apps.outbox.relay.ordering import FAILED, HELD, PENDING, PUBLISHED, KeyOrder
from apps.outbox.relay.partitions import partition_for
from apps.outbox.services import (
    NOTIFY_CHANNEL,
    outbox_events_requeue_forgotten,
    outbox_events_requeue_stranded,
)

logger = logging.getLogger(__name__)

UNCONFIRMED_ROUNDS_BEFORE_REBUILD = 3
HELD_BACK_PAUSE_S = 0.05


@dataclass
class PumpResult:
    sent: int = 0
    published: int = 0
    held_back: int = 0
    transient: int = 0  # rows not published that stay pending: refused until a person acts, or unconfirmed
    unconfirmed: int = 0  # of those, the ones the broker did not confirm (timeouts): a producer problem maybe
    backlog: bool = False


class OutboxRelay(Worker):
    name = "relay_outbox"

    def __init__(self) -> None:
        super().__init__()
        self.batch_size = settings.OUTBOX_RELAY_BATCH_SIZE
        self.poll_interval = settings.OUTBOX_RELAY_POLL_INTERVAL_S
        self.delivery_timeout = settings.OUTBOX_RELAY_DELIVERY_TIMEOUT_S
        self.shutdown_grace = settings.OUTBOX_RELAY_SHUTDOWN_GRACE_S
        self.retry = Backoff(
            initial=min(0.5, settings.OUTBOX_RELAY_RETRY_MAX_S), maximum=settings.OUTBOX_RELAY_RETRY_MAX_S
        )
        # Between producer rebuilds after fatal errors; reset once a rebuilt producer got a row confirmed.
        self.rebuilds = Backoff(initial=self.retry.initial, maximum=self.retry.maximum)
        # Refused topics and unconfirmed keys, each with a backoff of its own: claims skip them (holds.py).
        self._holds = Holds(initial=self.retry.initial, maximum=self.retry.maximum)
        self.depth = max(1, settings.OUTBOX_RELAY_PIPELINE_DEPTH)
        self.stall_timeout = settings.OUTBOX_RELAY_STALL_TIMEOUT_S  # statement_timeout of the batch connections
        self.totals = {PUBLISHED: 0, FAILED: 0, PENDING: 0}
        self.heartbeat = HeartbeatRecorder(Heartbeat.Kind.RELAY)
        self.producer: Producer | None = None
        self._producer_broken = False
        self._unconfirmed_rounds = 0
        self._seq = 0
        self._databases: list[Any] = []  # Django wrappers of the batch connections (closed at teardown)
        self._free: deque[Any] = deque()  # their psycopg connections with no batch open
        self._listener: Any = None  # setup's LISTEN connection (Django's, untyped here)
        self._order = KeyOrder(remembered_batches=self.depth + 2)
        # Topics with a RelayProblem row (read before each pump): a confirmed row of one of them clears its problems.
        self._problem_topics: set[str] = set()
        # Broker amnesia (broker_memory): marks of what the cluster acknowledged, checked at start, every
        # interval, and at once after an offset went backwards.
        self.memory_check_interval = settings.OUTBOX_RELAY_BROKER_CHECK_S
        self.republish_window_hours = settings.OUTBOX_REPUBLISH_WINDOW_HOURS
        self._memory_retry = Backoff(initial=1.0, maximum=max(1.0, self.memory_check_interval))
        self._memory_check_due = 0.0
        self._memory_known = False  # a check has answered since this process started
        self._acked = broker_memory.AckedOffsets(mark_interval=self.memory_check_interval)
        self._cluster_id: str | None = None
        # Partitions whose marks could not be read (no leader): their rows are not sent until a check reads them.
        self._unreadable: set[tuple[str, int]] = set()
        self._partition_counts: dict[str, int] = {}
        self._connectivity = ConnectivityLog("relay")

    # --- lifecycle -------------------------------------------------------------------------------
    def setup(self) -> None:
        self._bound_main_connection()
        self.producer = self._new_producer()
        self._producer_broken = False
        self._listener = connections.create_connection(DEFAULT_DB_ALIAS)
        self._listener.ensure_connection()
        self._listener.connection.autocommit = True
        self._listener.connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        for _ in range(self.depth):
            self._free.append(self._batch_connection())
        outbox_events_requeue_stranded()  # rows an older release wrote without a queue entry (also beat's job)
        logger.info("relay started: batch %s, pipeline depth %s", self.batch_size, self.depth)

    def run_once(self) -> bool:
        """One round; True when it decided the fate of rows (run_worker's restart backoff resets on that)."""
        self.heartbeat.beat()  # waiting for a producer or for the broker's answer is alive too
        if self._producer_broken:
            delay = self.rebuilds.failed()
            logger.warning("relay: rebuilding the producer in %.1fs", delay)
            if self.stopping.wait(delay):
                return False
            self._rebuild_producer()
        if time.monotonic() >= self._memory_check_due and not self._check_broker_memory() and not self._memory_known:
            # Not one claim before the broker said whether it still holds what it acknowledged: rows sent to an
            # emptied broker first would go out before the older rows it lost. (Unreachable, it takes none anyway.)
            self.stopping.wait(max(0.0, self._memory_check_due - time.monotonic()))
            return False
        if self.producer is not None:
            self._connectivity.check(self.producer)
        self._take_notifications(timeout=0)  # rows committed before this claim are seen by it
        # Problems another relay recorded: whichever relay next delivers to their topic clears them (a tiny table).
        self._problem_topics = claims.problem_topics()
        result = self._pump()
        self.heartbeat.beat()
        if result.published:
            self.rebuilds.succeeded()
            self._unconfirmed_rounds = 0
        elif result.unconfirmed:
            # Only unconfirmed sends count: a refusal a person must fix is the broker's answer, and a rebuild (with
            # its backoff, claiming nothing meanwhile) would stop every other topic for nothing.
            self._unconfirmed_rounds += 1
            if self._unconfirmed_rounds >= UNCONFIRMED_ROUNDS_BEFORE_REBUILD:
                # A broker that restarted with empty memory answers this producer's id with
                # UNKNOWN_PRODUCER_ID for ever (librdkafka retries until the messages time out): a new producer
                # gets a new id. During a plain outage the new one simply connects once the broker is back.
                logger.warning(
                    "relay: nothing confirmed in %s rounds; rebuilding the producer", self._unconfirmed_rounds
                )
                self._unconfirmed_rounds = 0
                self._producer_broken = True
        progress = result.published > 0 or (result.sent > 0 and not result.transient)
        if self.stopping.is_set() or self._producer_broken:
            return progress
        if result.transient and not result.published:
            # Nothing got through. The rows that failed are held (their topic or key, each with its own
            # backoff) and the next claim skips them; before it, a pause that new rows' NOTIFY cuts short.
            delay = self.retry.failed()
            logger.warning("%s rows not confirmed by the broker; %s", result.transient, self._held_description())
            self._take_notifications(timeout=min(delay, self._holds.seconds_to_next() or delay))
        elif result.backlog or result.transient:
            self.retry.succeeded()
        elif result.held_back:
            # Rows whose key has an earlier row held by another relay: let that relay finish first. Its batch
            # commits within milliseconds; a poll interval's wait here left two relays slower than one.
            self.stopping.wait(min(self.poll_interval, HELD_BACK_PAUSE_S))
        else:
            self.retry.succeeded()
            self._take_notifications(timeout=self.poll_interval)
        return progress

    def _held_description(self) -> str:
        held = self._holds.active()
        topics = f"topics held: {', '.join(held.topics)}; " if held.topics else ""
        return f"{topics}{len(held.keys)} keys held; other rows go on"

    def teardown(self) -> None:
        if self.stopping.is_set():
            self.heartbeat.remove()  # a clean stop is not a silent relay
        producer, self.producer = self.producer, None
        if producer is not None:
            remaining = producer.flush(self.shutdown_grace)
            if remaining:
                logger.warning("relay: %s messages unconfirmed at shutdown; their rows stay pending", remaining)
                producer.purge(in_queue=True, in_flight=True, blocking=True)
                producer.poll(0)
            producer.close()
        databases, self._databases = self._databases, []
        self._free.clear()
        for database in [*databases, self._listener]:
            if database is None:
                continue
            try:
                database.close()  # an open transaction (a failed batch) rolls back with its connection
            except Exception as error:  # noqa: BLE001 - a connection that cannot close is dropped all the same
                logger.warning("relay: closing a connection failed: %s", error)
        self._listener = None

    # --- the pipeline ------------------------------------------------------------------------------
    def _pump(self) -> PumpResult:
        """Run batches back to back, up to `depth` open at once, while every claim comes back full."""
        result = PumpResult(backlog=True)
        open_batches: deque[Batch] = deque()
        try:
            while True:
                claiming = result.backlog and not (
                    self.stopping.is_set() or self._producer_broken or result.transient
                )
                if claiming and self._free:
                    batch = Batch(self._seq, self._free.popleft())
                    self._seq += 1
                    open_batches.append(batch)
                    self._claim_and_send(batch)
                    result.backlog = batch.claimed >= self.batch_size and not batch.held_back
                    continue
                if not open_batches:
                    break
                self._await_reports(open_batches[0])
                self._commit(open_batches[0], result)
                open_batches.popleft()
        except BaseException:
            # Nothing of the open batches is marked: their rows stay pending and go again. What the producer
            # still holds of them must not land after another relay re-sends them.
            if any(batch.ids for batch in open_batches):
                self._abandon_in_flight(reason="a batch failed")
            for batch in open_batches:
                self._roll_back(batch)
            raise
        return result

    def _claim_and_send(self, batch: Batch) -> None:
        rows = claims.claim(
            batch.connection, self.batch_size, in_flight=self._order.in_flight, held=self._holds.active()
        )
        batch.claimed = len(rows)
        produce = self.producer.produce  # type: ignore[union-attr] # the loop runs only with a producer
        prefix = settings.KAFKA_TOPIC_PREFIX
        order = self._order
        traced = otel_enabled()
        for row_id, topic, key, payload, event_id, source, event_type, time_, traceparent, previous_id in rows:
            if self._producer_broken:
                break  # the rest stays pending, unsent and unrecorded: the next producer takes it
            if previous_id is not None:
                previous_id = order.previous_if_ours(previous_id)
                if previous_id is HELD:
                    batch.held_back += 1
                    continue
            key_of = (topic, key)
            cluster_topic = prefix + topic
            if self._unreadable and self._bound_for_unreadable(cluster_topic, key):
                # Its partition's memory is unknown: it waits, and so does every later row of its key (same partition).
                self._holds.hold(topic, key)
                continue
            previous_id = order.open_predecessor(key_of, row_id, previous_id)
            slot = batch.add(
                row_id, previous_id, topic=topic, key=key, cluster_topic=cluster_topic, event_id=event_id, time=time_,
                traceparent=traceparent,
            )
            # With OpenTelemetry each row is sent in a producer span under the row's trace, and carries that span.
            span = send_span(traceparent, topic=cluster_topic, key=key, event_id=event_id) if traced else None
            with span or nullcontext(traceparent) as traceparent:
                headers = cloudevents_headers(
                    event_id=event_id, source=source, event_type=event_type, time=time_, traceparent=traceparent
                )
                self._produce(produce, batch, slot, (cluster_topic, payload, key), headers)
            order.sent(row_id, key_of)
            batch.tails[key_of] = row_id
        batch.seal()

    def _bound_for_unreadable(self, cluster_topic: str, key: str) -> bool:
        count = self._partition_counts.get(cluster_topic)
        if not count or not key:
            return any(topic == cluster_topic for topic, _ in self._unreadable)  # cannot tell: the topic waits
        return (cluster_topic, partition_for(key, count)) in self._unreadable

    def _produce(
        self, produce: Any, batch: Batch, slot: int, message: tuple[str, str, str], headers: list[tuple[str, str]]
    ) -> None:
        topic, payload, key = message
        while True:
            try:
                produce(topic, payload, key, headers=headers, on_delivery=partial(batch.report, slot))
                return
            except BufferError:
                self.producer.poll(0.05)  # type: ignore[union-attr] # the loop runs only with a producer
            except KafkaException as refused:
                batch.refuse_now(slot, refused.args[0])
                if refused.args[0].fatal():
                    self._on_client_error(refused.args[0])
                return

    def _await_reports(self, batch: Batch) -> None:
        """Serve delivery reports until `batch` has all of its own; bounded by message.timeout.ms, and by the
        grace on shutdown."""
        deadline = time.monotonic() + self.delivery_timeout + 5.0
        stop_deadline: float | None = None
        while not batch.complete:
            self.producer.poll(0.05)  # type: ignore[union-attr] # the loop runs only with a producer
            if self._producer_broken and not batch.complete:
                self._abandon_in_flight(reason="fatal producer error")  # its queued reports will never come
                return
            now = time.monotonic()
            if self.stopping.is_set() and stop_deadline is None:
                stop_deadline = now + self.shutdown_grace
            if now > deadline or (stop_deadline is not None and now > stop_deadline):
                self._abandon_in_flight(reason="delivery reports overdue")
                return

    def _abandon_in_flight(self, *, reason: str) -> None:
        """Drop what the producer still holds, so none of it can reach the topic after a later re-send.

        Purged messages report _PURGE_* (their rows stay pending). Requests already on the wire may still
        land: they precede any re-send, because the producer is rebuilt before the next claim.
        """
        logger.warning("relay: %s; purging the producer and rebuilding it", reason)
        self._producer_broken = True
        producer = self.producer
        if producer is not None:
            producer.purge(in_queue=True, in_flight=True, blocking=True)
            producer.poll(0)

    def _commit(self, batch: Batch, result: PumpResult) -> None:
        """Record every sent row's outcome and commit, in one round trip."""
        started = time.monotonic()
        record = decide(batch, self._order)
        conn = batch.connection
        with conn.pipeline():
            claims.mark_published(conn, record.published)
            claims.mark_failed(conn, record.failed)
            claims.mark_retried(conn, record.retried)
            conn.commit()
        self._order.recorded(batch.tails, record.outcomes)
        self._free.append(conn)
        self._note_holds(record)
        for refused, slot in zip(record.failed, record.failed_slots, strict=True):
            with resumed(batch.traceparents[slot], event_id=batch.event_ids[slot]):  # the line joins the row's trace
                logger.error("relay: outbox row %s refused for good, marked failed: %s", refused.id, refused.error)
        self._report_problems(batch, record)
        result.sent += len(batch.ids)
        result.published += len(record.published)
        result.held_back += batch.held_back
        result.transient += len(record.retried)
        result.unconfirmed += record.unconfirmed
        for outcome in record.outcomes.values():
            self.totals[outcome] += 1
        if record.published or record.failed:
            # Rows decided (a batch refused whole is not progress). Here, not only between pumps: a large backlog
            # keeps one pump for minutes.
            self.heartbeat.progress()
        self.heartbeat.beat()
        observe_batch(batch, record.outcomes, seconds=time.monotonic() - started)

    def _note_holds(self, record: Record) -> None:
        for topic, key in record.delivered_keys:
            self._holds.release(topic, key)
        for topic in record.refused_topics:
            self._holds.hold(topic)
        for topic, key in record.unconfirmed_keys - record.delivered_keys:
            self._holds.hold(topic, key)

    def _roll_back(self, batch: Batch) -> None:
        self._order.recorded(batch.tails, dict.fromkeys(batch.ids, PENDING))
        try:
            batch.connection.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is closed at teardown, which follows
            logger.warning("relay: rolling a batch back failed", exc_info=True)

    def _report_problems(self, batch: Batch, record: Record) -> None:
        """Refusals a person must fix: logged at ERROR and kept in RelayProblem; a confirmed row clears its topic's.
        Also the broker marks due (BrokerMark).

        After the batch's commit, in a transaction of their own: failing to record these must not cost the batch
        its rows' outcomes.
        """
        marks: list[tuple[str, int, int, str]] = []
        if record.acked:
            marks, reset = self._acked.note(record.acked, now=time.monotonic())
            if reset:
                self._memory_check_due = 0.0
        solved: set[str] = set()
        if self._problem_topics and record.published:
            topic_of = dict(zip(batch.ids, batch.cluster_topics, strict=True))
            solved = {topic_of[d.id] for d in record.published} & self._problem_topics
        for (code, topic), (rows, message) in record.problems.items():
            logger.error(
                "relay: %s rows for %s refused with %s (%s); they stay pending and are retried with backoff,"
                " but only a change on the cluster (ACL, topic, policy) will let them through",
                rows, topic, code, message,
            )
        if not record.problems and not solved and not marks:
            return
        conn = batch.connection
        try:
            claims.record_problems(
                conn, [(code, topic, message, rows) for (code, topic), (rows, message) in record.problems.items()]
            )
            claims.clear_problems(conn, solved)
            claims.record_marks(conn, marks, cluster_id=self._known_cluster_id())
            conn.commit()
        except Exception:
            logger.exception("relay: could not record problems or broker marks (the rows' outcomes are kept)")
            self._acked.unwritten(marks)  # written with the next batch
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 - the next claim on it fails and restarts the relay
                logger.warning("relay: rolling back failed", exc_info=True)
            return
        self._problem_topics.difference_update(solved)
        self._problem_topics.update(topic for _code, topic in record.problems)

    # --- broker amnesia ---------------------------------------------------------------------------
    def _check_broker_memory(self) -> bool:
        """Does the cluster still hold what it acknowledged? If not, re-queue the window's published rows.

        Runs between pumps (no batch open). Without marks (nothing published yet) there is nothing
        to ask; an unreachable broker is asked again with backoff (returns False).
        """
        self._memory_check_due = time.monotonic() + self.memory_check_interval
        try:
            return self._examine_broker_memory()
        except BaseException:
            self._memory_check_due = 0.0  # not done until its re-queue committed: again before the next claim
            raise

    def _examine_broker_memory(self) -> bool:
        marks = [broker_memory.Mark(*row) for row in claims.broker_marks()]
        if not marks:
            self._memory_known = True
            return True
        assert self.producer is not None
        findings = broker_memory.examine(self.producer, marks, timeout=5.0)
        if findings.unreachable:
            delay = self._memory_retry.failed()
            self._memory_check_due = time.monotonic() + delay
            logger.info("relay: cannot check the broker's memory (%s); again in %.0fs", findings.unreachable, delay)
            return False
        self._unreadable = {(mark.topic, mark.partition) for mark in findings.unreadable}
        self._partition_counts = findings.partitions or self._partition_counts
        if self._unreadable:
            # Rows bound for those partitions wait (held by key, in _claim_and_send); the rest goes. Ask again soon.
            delay = self._memory_retry.failed()
            self._memory_check_due = time.monotonic() + delay
            logger.warning("relay: cannot read %s; their rows wait, the others go; asking again in %.0fs",
                           ", ".join(f"{t}[{p}]" for t, p in sorted(self._unreadable)), delay)
        else:
            self._memory_retry.succeeded()
        self._cluster_id = findings.cluster_id or self._cluster_id
        if findings.stale:
            claims.forget_marks([(m.topic, m.partition, m.offset) for m in findings.stale])
        if findings.lost:
            self._requeue_forgotten(findings.lost)
        self._memory_known = True
        return True

    def _requeue_forgotten(self, lost: list[tuple[broker_memory.Mark, str]]) -> None:
        reasons = "; ".join(why for _mark, why in lost[:5])
        count = outbox_events_requeue_forgotten(
            lost_marks=[(m.topic, m.partition, m.offset, m.event_id) for m, _why in lost],
            window_hours=self.republish_window_hours,
            note=f"re-queued: the Kafka cluster forgot what it had acknowledged ({reasons})",
        )
        self._order.forget_outcomes()  # recorded outcomes may name rows that are pending again
        self._acked.forget()
        # The producer's idempotence state (producer id, sequence numbers) belongs to the lost log.
        self._rebuild_producer()
        if count is None:
            logger.warning(
                "relay: the Kafka cluster forgot what it acknowledged (%s); another relay re-queued", reasons
            )
            return
        logger.error(
            "relay: the Kafka cluster forgot what it had acknowledged (%s): %s rows published in the last %g h"
            " re-queued in id order to be sent again (consumers' inboxes make the repeats harmless)",
            reasons, count, self.republish_window_hours,
        )

    def _known_cluster_id(self) -> str:
        if self._cluster_id is None and self.producer is not None:
            try:
                self._cluster_id = self.producer.list_topics(timeout=5).cluster_id or ""
            except KafkaException:
                return ""
        return self._cluster_id or ""

    # --- connections and the producer ---------------------------------------------------------------
    def _bound_main_connection(self) -> None:
        """Heartbeats, the stranded sweep, marks and re-queues run on Django's connection: give its statements
        the batch connections' bound, on the open connection and on any it reconnects."""
        timeout_ms = max(1, int(self.stall_timeout * 1000))
        main = connections[DEFAULT_DB_ALIAS]
        options = main.settings_dict.setdefault("OPTIONS", {})
        flag = f"-c statement_timeout={timeout_ms}"
        if flag not in options.get("options", ""):
            options["options"] = f"{options.get('options', '')} {flag}".strip()
        main.ensure_connection()
        with main.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {timeout_ms}")

    def _batch_connection(self) -> Any:
        """A psycopg connection of its own for batches, with the relay's session settings, outside autocommit."""
        database = connections.create_connection(DEFAULT_DB_ALIAS)
        self._databases.append(database)
        database.ensure_connection()
        conn = database.connection
        conn.autocommit = True
        conn.execute(claims.relay_session_settings(statement_timeout_s=self.stall_timeout))
        conn.autocommit = False
        return conn

    def _new_producer(self) -> Producer:
        config = producer_config(
            **{
                "message.timeout.ms": int(self.delivery_timeout * 1000),
                "linger.ms": settings.OUTBOX_RELAY_LINGER_MS,
                "error_cb": self._on_client_error,
            }
        )
        return Producer(config)

    def _on_client_error(self, error: KafkaError) -> None:
        if error.fatal():
            logger.error("relay: fatal producer error %s; rebuilding the producer", error)
            self._producer_broken = True
        elif not self._connectivity.note(error):  # a connectivity error is logged only if still true
            logger.info("relay: producer: %s", error)

    def _rebuild_producer(self) -> None:
        old, self.producer = self.producer, None
        if old is not None:
            old.purge(in_queue=True, in_flight=True, blocking=True)
            old.poll(0)
            old.close()
        self.producer = self._new_producer()
        self._producer_broken = False

    def _take_notifications(self, *, timeout: float) -> None:
        """Wait up to `timeout` for a NOTIFY (or just drain queued ones)."""
        assert self._listener is not None
        raw = self._listener.connection
        for _ in raw.notifies(timeout=timeout, stop_after=1):
            break
        for _ in raw.notifies(timeout=0):  # repeats fold into one wake-up
            pass


def observe_batch(batch: Batch, outcomes: dict[int, str], *, seconds: float) -> None:
    """The metrics of a committed batch: rows per topic and outcome, delivery latency of the published ones."""
    RELAY_BATCH_SECONDS.observe(seconds)
    now = time.time()
    counts: dict[tuple[str, str], int] = {}
    latency: dict[str, Any] = {}
    for row_id, topic, created in zip(batch.ids, batch.topics, batch.times, strict=True):
        outcome = outcomes.get(row_id, PENDING)
        counts[topic, outcome] = counts.get((topic, outcome), 0) + 1
        if outcome == PUBLISHED:
            if topic not in latency:
                latency[topic] = RELAY_DELIVERY_LATENCY.labels(topic)
            latency[topic].observe(max(0.0, now - datetime.fromisoformat(created).timestamp()))
    by_outcome = {PUBLISHED: RELAY_ROWS_PUBLISHED, FAILED: RELAY_ROWS_FAILED, PENDING: RELAY_ROWS_RETRIED}
    for (topic, outcome), count in counts.items():
        by_outcome[outcome].labels(topic).inc(count)
