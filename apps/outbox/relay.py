"""The outbox relay: sends committed outbox rows to Kafka; a row is marked published only after its ack.

A batch is one database transaction on one connection: claim rows (locked), produce them, wait for
every delivery report, record the outcome of each row, commit. To keep the broker busy while the
database works, `OUTBOX_RELAY_PIPELINE_DEPTH` batches run at once on as many "lanes" (a thread with its
own connection and transaction). Claims-and-sends and records-and-commits happen strictly in batch
order, so within a key the producer sees rows in id order and commits land in id order.
The guarantees are argued in docs/architecture.md ("Outbox and relay").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

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
from apps.outbox import broker_memory, claims
from apps.outbox.models import cloudevents_headers
from apps.outbox.services import (
    NOTIFY_CHANNEL,
    outbox_events_requeue_forgotten,
    outbox_events_requeue_stranded,
)

logger = logging.getLogger(__name__)

# Refused for good: no retry of the same bytes can ever succeed. The row becomes `failed` (kept, shown
# first in the admin, re-sendable once someone changed the broker's limits).
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)

# Refused until a person changes the cluster (an ACL, a missing topic, a policy): the rows stay pending and
# are retried with backoff like any transient error, but each one is reported loudly — an ERROR line, a
# RelayProblem row for the admin and `/readyz` — since waiting alone will not fix it. Never `failed`:
# marking a row failed for a misconfiguration that is fixed an hour later would silently drop it.
NEEDS_A_PERSON_ERRORS = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.POLICY_VIOLATION,
    }
)

# The producer itself failed, not the broker: the message never left this process (or cannot be known to
# have). Such a row is not counted as an attempt; it simply goes again with the next producer.
NOT_SENT_ERRORS = frozenset({KafkaError._FATAL, KafkaError._PURGE_QUEUE})

UNCONFIRMED_ROUNDS_BEFORE_REBUILD = 3

_HELD = object()  # a row whose key's previous row is someone else's: not sent by this claim
_BEHIND_UNCONFIRMED = "delivered, but an earlier row of its key was not confirmed: sent again after it"

PUBLISHED = "published"
FAILED = "failed"
PENDING = "pending"  # not confirmed: the row stays pending and is sent again
_FINAL = (PUBLISHED, FAILED)  # a successor of such a row may be marked published


def is_permanent(error: KafkaError) -> bool:
    return error.code() in PERMANENT_ERRORS and not error.fatal()


class RelayStalled(RuntimeError):
    """A pipeline wait ran past its bound: a lane is stuck. The relay is torn down and set up again."""


class RelayWedged(SystemExit):
    """A stuck lane did not let go even at teardown: only a new process can recover.

    A SystemExit, so `run_worker` does not retry it; `manage.py relay_outbox` then exits non-zero at once
    (the stuck thread would also block a normal interpreter exit) and its supervisor starts a new relay.
    """

    code: int  # always 1, the exit status (SystemExit allows any object)

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Sequencer:
    """Batch N+1 enters a stage only after batch N left it (or gave its turn up by failing)."""

    def __init__(self, start: int, *, stage: str) -> None:
        self._next = start
        self._left: set[int] = set()
        self._condition = threading.Condition()
        self._stage = stage

    @contextmanager
    def turn(self, seq: int, *, timeout: float) -> Iterator[None]:
        with self._condition:
            if not self._condition.wait_for(lambda: self._next >= seq, timeout):
                raise RelayStalled(f"batch {seq} waited {timeout:.0f}s for its {self._stage} turn (batch {self._next})")
        try:
            yield
        finally:
            self.leave(seq)

    def leave(self, seq: int) -> None:
        """Give the turn up (idempotent: a failing batch may leave a turn it never entered)."""
        with self._condition:
            if seq < self._next:
                return
            self._left.add(seq)
            while self._next in self._left:
                self._left.remove(self._next)
                self._next += 1
            self._condition.notify_all()


class Batch:
    """The rows of one claim that were handed to the producer, and what the broker said about each.

    Lock-free on the hot path: the claiming lane appends rows, then seals; delivery callbacks (on
    whichever lane polls the producer) fill their slot and append to `_settled` (list.append is atomic
    under the GIL). Each side checks "sealed and all settled" after its own write, so one of them sees it.
    """

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.claimed = 0
        self.held_back = 0
        # Per sent row: its id, the previous row of its key it must not overtake, its topic (for the metrics),
        # its topic on the cluster (KAFKA_TOPIC_PREFIX included: problems and broker marks), its event id (broker
        # marks, logs), its ce_time (the row's creation, RFC 3339: delivery latency) and its traceparent (logs).
        self.ids: list[int] = []
        self.previous: list[int | None] = []
        self.topics: list[str] = []
        self.cluster_topics: list[str] = []
        self.event_ids: list[str] = []
        self.times: list[str] = []
        self.traceparents: list[str] = []
        # Per (topic, key) sent in this batch, its last row: what later batches may have to wait for.
        self.tails: dict[tuple[str, str], int] = {}
        # Per sent row: (partition, offset) once acknowledged, a KafkaError once refused, None while waiting.
        self.reports: list[tuple[int, int] | KafkaError | None] = []
        self._settled: list[None] = []
        self._expected: int | None = None  # set by seal()
        self.complete = threading.Event()

    def add(
        self, row_id: int, previous_id: int | None, *, topic: str, cluster_topic: str, event_id: str, time: str,
        traceparent: str,
    ) -> int:
        self.ids.append(row_id)
        self.previous.append(previous_id)
        self.topics.append(topic)
        self.cluster_topics.append(cluster_topic)
        self.event_ids.append(event_id)
        self.times.append(time)
        self.traceparents.append(traceparent)
        self.reports.append(None)
        return len(self.ids) - 1

    def report(self, slot: int, error: KafkaError | None, message: Message) -> None:
        """Delivery callback (runs on whichever lane polls the producer)."""
        # A delivered message has its partition and offset (the client types them `int | None` for any message).
        self.reports[slot] = error if error is not None else (message.partition(), message.offset())  # type: ignore[assignment]
        self._settle()

    def refuse_now(self, slot: int, error: KafkaError) -> None:
        """`produce()` itself refused the message: no delivery report will come."""
        self.reports[slot] = error
        self._settle()

    def seal(self) -> None:
        self._expected = len(self.ids)
        if len(self._settled) == self._expected:
            self.complete.set()

    def _settle(self) -> None:
        self._settled.append(None)
        if len(self._settled) == self._expected:
            self.complete.set()


@dataclass
class Job:
    seq: int
    batch: Batch
    claim_done: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None
    counts: dict[str, int] = field(default_factory=dict)
    outcomes: dict[int, str] = field(default_factory=dict)  # per sent row, as recorded (all pending on failure)


@dataclass
class PumpResult:
    sent: int = 0
    published: int = 0
    held_back: int = 0
    transient: int = 0
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
        self.depth = max(1, settings.OUTBOX_RELAY_PIPELINE_DEPTH)
        # No statement of a lane outlasts the stall timeout (statement_timeout); a batch lives at most a claim,
        # the delivery wait (or the stop grace) and a record. Any pipeline wait longer than that means a stuck lane.
        self.stall_timeout = settings.OUTBOX_RELAY_STALL_TIMEOUT_S
        self.wait_bound = self.delivery_timeout + 5.0 + self.shutdown_grace + 2 * self.stall_timeout
        self.totals = {PUBLISHED: 0, FAILED: 0, PENDING: 0}
        self.heartbeat = HeartbeatRecorder(Heartbeat.Kind.RELAY)
        self.producer: Producer | None = None
        self._producer_broken = False
        self._unconfirmed_rounds = 0
        self._seq = 0
        self._lanes: list[ThreadPoolExecutor] = []
        self._listener: Any = None  # setup's LISTEN connection (Django's, untyped here)
        # Rows this process has sent and not yet recorded, the last of them per (topic, key), and the recorded
        # outcome of recent batches: what decides whether a row may follow its key's previous row.
        self._in_flight: set[int] = set()
        self._flight_tails: dict[tuple[str, str], int] = {}
        self._outcomes: dict[int, str] = {}
        self._outcome_batches: deque[list[int]] = deque()
        self._state_lock = threading.Lock()
        # Topics with a RelayProblem row: a confirmed row of one of them clears its problems.
        self._problem_topics: set[str] = set()
        # Broker amnesia (apps.outbox.broker_memory): the highest offset acknowledged per partition in this
        # process (a lower one later means the log was reset), when each partition's mark was last written,
        # and when to check the marks next (at start, every interval, at once after a reset was seen).
        self.memory_check_interval = settings.OUTBOX_RELAY_BROKER_CHECK_S
        self.republish_window_hours = settings.OUTBOX_REPUBLISH_WINDOW_HOURS
        self._memory_retry = Backoff(initial=1.0, maximum=max(1.0, self.memory_check_interval))
        self._memory_check_due = 0.0
        self._memory_known = False  # a check has answered since this process started
        self._acked_high: dict[tuple[str, int], int] = {}
        self._marked_at: dict[tuple[str, int], float] = {}
        self._cluster_id: str | None = None
        self._connectivity = ConnectivityLog("relay")

    # --- lifecycle -------------------------------------------------------------------------------
    def setup(self) -> None:
        self._claim_turns = Sequencer(self._seq, stage="claim")
        self._commit_turns = Sequencer(self._seq, stage="commit")
        self._lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"relay-lane-{i}") for i in range(self.depth)]
        self.producer = self._new_producer()
        self._producer_broken = False
        self._listener = connections.create_connection(DEFAULT_DB_ALIAS)
        self._listener.ensure_connection()
        self._listener.connection.autocommit = True
        self._listener.connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._problem_topics = claims.problem_topics()
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
        result = self._pump()
        self.heartbeat.beat()
        if result.published:
            self.rebuilds.succeeded()
            self._unconfirmed_rounds = 0
        elif result.transient:
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
        if result.transient:
            delay = self.retry.failed()
            logger.warning("%s rows not confirmed by the broker; retrying in %.1fs", result.transient, delay)
            self.stopping.wait(delay)
        elif result.backlog:
            self.retry.succeeded()
        elif result.held_back:
            # Rows whose key has an earlier row held by another relay: let that relay finish first.
            self.stopping.wait(self.poll_interval)
        else:
            self.retry.succeeded()
            self._take_notifications(timeout=self.poll_interval)
        return progress

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
        lanes, self._lanes = self._lanes, []
        stuck = 0
        for lane in lanes:
            try:
                error = lane.submit(_close_lane_connection).exception(timeout=self.stall_timeout)
            except TimeoutError:
                stuck += 1
                error = None
            if error is not None:
                logger.warning("relay: closing a lane connection failed: %s", error)
            lane.shutdown(wait=False, cancel_futures=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if stuck:
            raise RelayWedged(f"relay: {stuck} lane(s) stuck for over {self.stall_timeout:.0f}s; exiting for a restart")

    # --- broker amnesia ---------------------------------------------------------------------------
    def _check_broker_memory(self) -> bool:
        """Does the cluster still hold what it acknowledged? If not, re-queue the window's published rows.

        Runs between pumps (no batch in flight here). Without marks (nothing published yet) there is nothing
        to ask; an unreachable broker is asked again with backoff (returns False).
        """
        self._memory_check_due = time.monotonic() + self.memory_check_interval
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
        self._memory_retry.succeeded()
        self._memory_known = True
        self._cluster_id = findings.cluster_id or self._cluster_id
        if findings.stale:
            claims.forget_marks([(m.topic, m.partition, m.offset) for m in findings.stale])
        if findings.lost:
            self._requeue_forgotten(findings.lost)
        return True

    def _requeue_forgotten(self, lost: list[tuple[broker_memory.Mark, str]]) -> None:
        reasons = "; ".join(why for _mark, why in lost[:5])
        count = outbox_events_requeue_forgotten(
            lost_marks=[(m.topic, m.partition, m.offset, m.event_id) for m, _why in lost],
            window_hours=self.republish_window_hours,
            note=f"re-queued: the Kafka cluster forgot what it had acknowledged ({reasons})",
        )
        with self._state_lock:
            # Recorded outcomes may name rows that are pending again: nothing recorded before counts now.
            self._outcomes.clear()
            self._outcome_batches.clear()
            self._acked_high.clear()
            self._marked_at.clear()
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

    def _mark_acknowledged(self, acked: dict[tuple[str, int], list]) -> list[tuple[str, int, int, str]]:
        """Note this batch's acknowledged offsets; returns the marks due to be written.

        `acked`: per (topic, partition), [lowest offset, highest offset, event id at the highest].
        """
        now = time.monotonic()
        due: list[tuple[str, int, int, str]] = []
        with self._state_lock:
            for where, (low, high, event_id) in acked.items():
                seen = self._acked_high.get(where)
                if seen is not None and low <= seen:
                    # Offsets only grow on one log: this one was reset under us. Check the marks at once.
                    logger.warning(
                        "relay: %s[%s] acknowledged offset %s after %s: checking the broker", *where, low, seen
                    )
                    self._memory_check_due = 0.0
                if seen is None or high > seen:
                    self._acked_high[where] = high
                if now - self._marked_at.get(where, -1e18) >= self.memory_check_interval:
                    self._marked_at[where] = now
                    due.append((where[0], where[1], high, event_id))
        return due

    def _known_cluster_id(self) -> str:
        if self._cluster_id is None and self.producer is not None:
            try:
                self._cluster_id = self.producer.list_topics(timeout=5).cluster_id or ""
            except KafkaException:
                return ""
        return self._cluster_id or ""

    # --- the pipeline ------------------------------------------------------------------------------
    def _pump(self) -> PumpResult:
        """Run batches back to back, `depth` at a time, while every claim comes back full."""
        result = PumpResult()
        jobs: deque[Job] = deque()
        errors: list[BaseException] = []
        try:
            while not self.stopping.is_set() and not self._producer_broken and not result.transient:
                if len(jobs) >= self.depth:
                    self._finish(jobs.popleft(), result, errors)
                    if errors or result.transient:
                        break  # back off before claiming again
                job = Job(self._seq, Batch(self._seq))
                self._seq += 1
                job.future = self._lanes[job.seq % self.depth].submit(self._run_batch, job)
                jobs.append(job)
                if not job.claim_done.wait(self.wait_bound):
                    jobs.pop()  # stuck: waiting for its end too would only double the wait
                    errors.append(RelayStalled(f"batch {job.seq} did not finish its claim in {self.wait_bound:.0f}s"))
                    break
                result.backlog = job.batch.claimed >= self.batch_size and not job.batch.held_back
                if not result.backlog:
                    break
        finally:
            while jobs:
                self._finish(jobs.popleft(), result, errors)
        if errors:
            raise errors[0]
        return result

    def _finish(self, job: Job, result: PumpResult, errors: list[BaseException]) -> None:
        assert job.future is not None
        try:
            error = job.future.exception(timeout=self.wait_bound)
        except TimeoutError:
            error = RelayStalled(f"batch {job.seq} did not end within {self.wait_bound:.0f}s")
        if error is not None:
            errors.append(error)
            result.backlog = False
            return
        result.sent += len(job.batch.ids)
        result.published += job.counts.get("published", 0)
        result.held_back += job.batch.held_back
        result.transient += job.counts.get("retried", 0)
        # Here, not only between pumps: draining a large backlog keeps the relay in one pump for minutes.
        if job.batch.ids:
            self.heartbeat.progress()
        self.heartbeat.beat()

    def _run_batch(self, job: Job) -> None:
        """One batch, on this lane's connection, in one transaction.

        Whatever fails (the lane's connection, the claim, the wait for reports, the record), the batch gives
        both its turns up, so later batches never wait for it; its rows stay pending and the error reaches
        `_pump`, which ends the iteration (run_worker then tears the relay down and sets it up again).
        """
        batch = job.batch
        error: BaseException | None = None
        started = time.monotonic()
        try:
            self._prepare_lane_connection()
            transaction.set_autocommit(False)
            with self._claim_turns.turn(job.seq, timeout=self.wait_bound):
                self._claim_and_send(batch)
        except BaseException as caught:  # noqa: BLE001 - whatever it is, the turns go first; re-raised below
            error = caught
            self._claim_turns.leave(job.seq)
        finally:
            job.claim_done.set()
        if error is None:
            try:
                self._await_reports(batch)
            except BaseException as caught:  # noqa: BLE001 - the batch still takes its commit turn; re-raised below
                error = caught
        try:
            with self._commit_turns.turn(job.seq, timeout=self.wait_bound):
                error = self._commit(job, error)
        except RelayStalled as stalled:  # only the wait for the turn raises it: an earlier batch is stuck
            self._commit_turns.leave(job.seq)
            error = self._commit(job, error or stalled)
        self._restore_autocommit()
        if error is not None:
            raise error
        observe_batch(batch, job.outcomes, seconds=time.monotonic() - started)

    def _commit(self, job: Job, error: BaseException | None) -> BaseException | None:
        """Record the batch and commit; after a failure roll back instead (nothing is marked). Never raises."""
        batch = job.batch
        outcomes: dict[int, str] = {}
        try:
            if error is None:
                outcomes = self._record(batch, job.counts)
                transaction.commit()
        except BaseException as caught:  # noqa: BLE001 - "never raises": returned for `_run_batch` to raise
            error = caught
        if error is not None:
            outcomes = dict.fromkeys(batch.ids, PENDING)
            if batch.ids:
                # What the producer still holds of these rows must not land after another relay re-sends them.
                self._abandon_in_flight(reason=f"batch failed: {error!r}")
            self._abandon_transaction()
        job.outcomes = outcomes
        self._remember(batch, outcomes)
        return error

    def _claim_and_send(self, batch: Batch) -> None:
        # One snapshot of what is in flight, taken before the claim: a batch recording meanwhile cannot make
        # a row of ours look final to this claim before its outcome is known.
        with self._state_lock:
            in_flight = list(self._in_flight)
            flight_tails = dict(self._flight_tails)
        rows = claims.claim(self.batch_size, in_flight=in_flight)
        batch.claimed = len(rows)
        produce = self.producer.produce  # type: ignore[union-attr] # the loop runs only with a producer
        prefix = settings.KAFKA_TOPIC_PREFIX
        sent_here: set[int] = set()
        tails = batch.tails
        traced = otel_enabled()
        for row_id, topic, key, payload, event_id, source, event_type, time_, traceparent, previous_id in rows:
            if self._producer_broken:
                break  # the rest stays pending, unsent and unrecorded: the next producer takes it
            if previous_id is not None and previous_id not in sent_here:
                previous_id = self._previous_if_ours(previous_id)
                if previous_id is _HELD:
                    batch.held_back += 1
                    continue
            # The nearest earlier row of this (topic, key) that this relay sent and whose fate is still open:
            # earlier in this batch, or in flight in an earlier batch (recorded before this one, commits being
            # in batch order). The row is marked only if that one ends final.
            key_of = (topic, key)
            for candidate in (tails.get(key_of), flight_tails.get(key_of)):
                if candidate is not None and candidate < row_id and (previous_id is None or candidate > previous_id):
                    previous_id = candidate
            tails[key_of] = row_id
            cluster_topic = prefix + topic
            slot = batch.add(
                row_id, previous_id, topic=topic, cluster_topic=cluster_topic, event_id=event_id, time=time_,
                traceparent=traceparent,
            )
            # With OpenTelemetry each row is sent in a producer span under the row's trace, and carries that span.
            span = send_span(traceparent, topic=cluster_topic, key=key, event_id=event_id) if traced else None
            with span or nullcontext(traceparent) as traceparent:
                headers = cloudevents_headers(
                    event_id=event_id, source=source, event_type=event_type, time=time_, traceparent=traceparent
                )
                self._produce(produce, batch, slot, (cluster_topic, payload, key), headers)
            sent_here.add(row_id)
        with self._state_lock:
            self._in_flight.update(sent_here)
            flight_tails = self._flight_tails
            for key_of, row_id in tails.items():
                if flight_tails.get(key_of, -1) < row_id:
                    flight_tails[key_of] = row_id
        batch.seal()

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

    def _previous_if_ours(self, previous_id: int) -> int | None | object:
        """The key's previous queued row, as this relay must treat it: in flight here (wait for its outcome),
        already final here (None: nothing to wait for), or anyone else's (_HELD: sending now could overtake it
        on the topic; another relay holds it, or will).
        """
        with self._state_lock:
            if previous_id in self._in_flight:
                return previous_id
            if self._outcomes.get(previous_id) in _FINAL:
                return None
        return _HELD

    def _await_reports(self, batch: Batch) -> None:
        """Wait for every delivery report; bounded by message.timeout.ms, and by the grace on shutdown."""
        deadline = time.monotonic() + self.delivery_timeout + 5.0
        stop_deadline: float | None = None
        while not batch.complete.is_set():
            self.producer.poll(0.01)  # type: ignore[union-attr] # the loop runs only with a producer
            if self._producer_broken and not batch.complete.is_set():
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

    def _record(self, batch: Batch, counts: dict[str, int]) -> dict[int, str]:
        """Decide each sent row's state from its report; a row never overtakes an unconfirmed predecessor."""
        published: list[claims.Delivered] = []
        failed: list[claims.Refused] = []
        failed_slots: list[int] = []
        retried: list[claims.Refused] = []
        problems: dict[tuple[str, str], list] = {}  # (error name, topic) -> [rows, message]
        acked: dict[tuple[str, int], list] = {}  # (topic, partition) -> [low offset, high offset, its event id]
        outcomes: dict[int, str] = {}
        with self._state_lock:
            earlier = self._outcomes
            for slot, (row_id, previous_id, report) in enumerate(
                zip(batch.ids, batch.previous, batch.reports, strict=True)
            ):
                if previous_id is not None and outcomes.get(previous_id, earlier.get(previous_id)) not in _FINAL:
                    # Delivered or not, it went out behind a row that must be sent again: send it again too,
                    # after that one, so the last copies on the topic are in order.
                    outcomes[row_id] = PENDING
                    if isinstance(report, tuple):
                        retried.append(claims.Refused(row_id, _BEHIND_UNCONFIRMED))
                elif isinstance(report, tuple):
                    outcomes[row_id] = PUBLISHED
                    partition, offset = report
                    published.append(claims.Delivered(row_id, partition, offset))
                    where = (batch.cluster_topics[slot], partition)
                    span = acked.get(where)
                    if span is None:
                        acked[where] = [offset, offset, batch.event_ids[slot]]
                    elif offset > span[1]:
                        span[1], span[2] = offset, batch.event_ids[slot]
                    elif offset < span[0]:
                        span[0] = offset
                elif isinstance(report, KafkaError) and is_permanent(report):
                    outcomes[row_id] = FAILED
                    failed.append(claims.Refused(row_id, report.str()))
                    failed_slots.append(slot)
                elif isinstance(report, KafkaError) and report.code() in NOT_SENT_ERRORS:
                    outcomes[row_id] = PENDING  # the producer failed, not the send: no attempt to count
                else:
                    outcomes[row_id] = PENDING
                    reason = report.str() if isinstance(report, KafkaError) else "no delivery report"
                    retried.append(claims.Refused(row_id, reason))
                    if isinstance(report, KafkaError) and report.code() in NEEDS_A_PERSON_ERRORS:
                        problem = problems.setdefault((report.name(), batch.cluster_topics[slot]), [0, reason])
                        problem[0] += 1
        claims.mark_published(published)
        claims.mark_failed(failed)
        claims.mark_retried(retried)
        for refused, slot in zip(failed, failed_slots, strict=True):
            with resumed(batch.traceparents[slot], event_id=batch.event_ids[slot]):  # the line joins the row's trace
                logger.error("relay: outbox row %s refused for good, marked failed: %s", refused.id, refused.error)
        self._report_problems(batch, published, problems, marks=self._mark_acknowledged(acked) if acked else [])
        counts.update(published=len(published), failed=len(failed), retried=len(retried))
        return outcomes

    def _report_problems(
        self,
        batch: Batch,
        published: list[claims.Delivered],
        problems: dict[tuple[str, str], list],
        *,
        marks: list[tuple[str, int, int, str]],
    ) -> None:
        """Refusals a person must fix: logged at ERROR and kept in RelayProblem; a confirmed row clears its topic's.
        Also the broker marks due (BrokerMark).

        In a savepoint: failing to record these must not cost the batch its rows' outcomes.
        """
        solved: set[str] = set()
        if self._problem_topics and published:
            topic_of = dict(zip(batch.ids, batch.cluster_topics, strict=True))
            solved = {topic_of[d.id] for d in published} & self._problem_topics
        for (code, topic), (rows, message) in problems.items():
            logger.error(
                "relay: %s rows for %s refused with %s (%s); they stay pending and are retried with backoff,"
                " but only a change on the cluster (ACL, topic, policy) will let them through",
                rows, topic, code, message,
            )
        if not problems and not solved and not marks:
            return
        try:
            with transaction.atomic():
                claims.record_problems(
                    [(code, topic, message, rows) for (code, topic), (rows, message) in problems.items()]
                )
                claims.clear_problems(solved)
                claims.record_marks(marks, cluster_id=self._known_cluster_id())
        except Exception:
            logger.exception("relay: could not record problems or broker marks (the rows' outcomes are kept)")
            with self._state_lock:
                for topic, partition, _offset, _event_id in marks:
                    self._marked_at.pop((topic, partition), None)  # write them with the next batch
            return
        with self._state_lock:
            self._problem_topics.difference_update(solved)
            self._problem_topics.update(topic for _code, topic in problems)

    def _remember(self, batch: Batch, outcomes: dict[int, str]) -> None:
        with self._state_lock:
            self._in_flight.difference_update(batch.ids)
            flight_tails = self._flight_tails
            for key_of, row_id in batch.tails.items():
                if flight_tails.get(key_of) == row_id:
                    del flight_tails[key_of]
            self._outcomes.update(outcomes)
            self._outcome_batches.append(list(outcomes))
            # A later claim can only name as predecessor a row of a batch still open when it began.
            while len(self._outcome_batches) > self.depth + 2:
                for row_id in self._outcome_batches.popleft():
                    self._outcomes.pop(row_id, None)
            for outcome in outcomes.values():
                self.totals[outcome] += 1

    # --- connections --------------------------------------------------------------------------------
    def _prepare_lane_connection(self) -> None:
        """Session settings of a lane's connection (set once per connection)."""
        if connection.connection is None:
            with connection.cursor() as cursor:
                cursor.execute(claims.relay_session_settings(statement_timeout_s=self.stall_timeout))

    def _abandon_transaction(self) -> None:
        try:
            transaction.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is closed; the next use opens anew
            connection.close()

    def _restore_autocommit(self) -> None:
        if connection.connection is None:
            return  # never opened, or closed after a failure: a new connection starts in autocommit anyway
        try:
            transaction.set_autocommit(True)
        except Exception:  # noqa: BLE001 - a connection that cannot reset is closed; the next use opens anew
            connection.close()

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


def _close_lane_connection() -> None:
    # Looked up on the lane's own thread: `connection` is thread-local.
    connection.close()
