"""The consumer runtime: one worker per consumer group, at-least-once, idempotent through the inbox.

Messages are consumed in batches. A batch runs in one database transaction with a savepoint per message
(inbox row + handler); offsets are stored only after that transaction committed. A message whose handler
raises is retried alone with backoff after the batch before it committed, within the batch's retry budget,
then handed to the ledger as `retrying` (automatic retries later, its aggregate parked behind it); permanent
failures are dead-lettered at once; neither blocks the partition. A redelivered message the ledger holds is
never run again. See docs/architecture.md.

Fast path: a run of consecutive messages for a registration with a batch handler (scopes not parked) is applied
in one savepoint with one inbox statement and one handler call. If that raises, the savepoint is rolled back
and the same messages take the per-message path, so every failure rule above still holds message by message.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from apps.common.kafka import ConnectivityLog, consumer_config, kafka_topic
from apps.common.metrics import (
    CONSUMER_END_TO_END,
    CONSUMER_HANDLER_SECONDS,
    CONSUMER_LAG,
    CONSUMER_MESSAGES,
    CONSUMER_REJOINS,
)
from apps.common.models import Heartbeat
from apps.common.redaction import redact, redact_error
from apps.common.selectors import live_partitions
from apps.common.tracing import log_context, resumed
from apps.common.workers import HeartbeatRecorder, Worker
from apps.consumers import registry
from apps.consumers.decoding import (
    SKIP,
    Decoded,
    DecodeFailure,
    Identity,
    MessageId,
    RawMessage,
    Skip,
    decode,
    identity,
    scope_of,
)
from apps.consumers.inbox import inbox_apply, inbox_apply_many, log_ids
from apps.consumers.ledger import Failure, deadletter_record, deadletter_record_minimal, ledger_row, ledger_statuses
from apps.consumers.models import DeadLetter
from apps.consumers.ordering import blocking_heads, deadletter_fill_scopes, lock_blocked, parked_failure
from apps.consumers.positions import group_positions, read_positions
from apps.consumers.watchdog import GroupStalled, OwnedIdleWatch, Position, Stall, UnownedLagWatch

logger = logging.getLogger(__name__)


@dataclass
class Counters:
    handled: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    parked: int = 0
    retries: int = 0
    in_ledger: int = 0  # redelivered messages the ledger already holds (unresolved or discarded): not run

    def __str__(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Counters field -> the `outcome` label of logiflow_consumer_messages_total (retries are attempts, not outcomes).
OUTCOMES = {"handled": "handled", "duplicates": "duplicate", "skipped": "skipped", "dead_lettered": "dead_lettered",
            "parked": "parked", "in_ledger": "in_ledger"}


@dataclass
class _Item:
    message: Message
    raw: RawMessage
    decoded: Decoded | Skip | DecodeFailure
    identity: Identity  # what the message is, for the ledger (its event id, else its bytes), never its offset

    @property
    def scope(self) -> bytes | None:
        """Whose order this message keeps (`decoding.scope_of`, the rule the ledger stores too)."""
        return scope_of(self.decoded, self.raw)

    @contextmanager
    def logged(self) -> Iterator[None]:
        """Lines about this message name its trace, event and route / invoice (when it could be decoded)."""
        if not isinstance(self.decoded, Decoded):
            yield
            return
        meta = self.decoded.meta
        with resumed(meta.traceparent, event_id=str(meta.event_id)), log_context(**log_ids(self.decoded.event)):
            yield


@dataclass
class _Known:
    """What the ledger says about a batch, read once per transaction."""

    heads: dict[bytes, int]  # scope -> the unresolved head its later messages park behind
    ledger: dict[MessageId, str]  # message id -> status, for messages the ledger holds (at any offset)


class _Retry(Exception):
    """The handler of `_Item` raised a retryable error inside the batch."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class ConsumerWorker(Worker):
    """Consumes the topics of one group's handlers; drive it with `run_worker` or call `run_once` in tests."""

    def __init__(
        self, group: str, *, group_id: str | None = None, batch_size: int | None = None,
        poll_timeout: float | None = None,
    ) -> None:
        super().__init__()
        topics = registry.topics_for(group)
        if not topics:
            raise ValueError(f"no handlers are registered for group {group!r}")
        self.group = group
        self.group_id = group_id or group
        self.topics = topics
        self.name = f"consumer[{group}]"
        self.batch_size = batch_size or settings.CONSUMER_BATCH_SIZE
        self.poll_timeout = settings.CONSUMER_POLL_TIMEOUT_S if poll_timeout is None else poll_timeout
        self.counters = Counters()
        self.consumer: Consumer | None = None
        self._reported_at = time.monotonic()
        self._retry_left = 0.0
        self._connectivity = ConnectivityLog(self.name)
        self.heartbeat = HeartbeatRecorder(Heartbeat.Kind.CONSUMER, group)
        self.partitions: list[dict[str, object]] = []  # the last lag sample, also in the heartbeat
        self._lag_sampled_at: float | None = None
        self._lag_labels: set[tuple[str, str, str]] = set()
        self._watch = UnownedLagWatch(threshold_s=settings.CONSUMER_UNOWNED_LAG_RESTART_S)
        self._idle_watch = OwnedIdleWatch(threshold_s=settings.CONSUMER_UNOWNED_LAG_RESTART_S)
        self._assigned: list[Position] = []  # the last sample's positions of this member's own partitions
        self._cluster_id: str | None = None  # the cluster this consumer joined (a new consumer learns it again)
        # The cluster was replaced: offsets stored or committed so far belong to the lost log, so nothing is
        # committed on leaving and the next consumer reads its first partitions from their beginning.
        self._cluster_replaced = False
        self._read_from_start = False
        self._rejoin_delay = 0.0
        check_retry_settings(max_poll_interval_ms=_max_poll_interval_ms(consumer_config(self.group_id)))

    # --- lifecycle ---------------------------------------------------------------------------------------

    def setup(self) -> None:
        if self._rejoin_delay:
            delay, self._rejoin_delay = self._rejoin_delay, 0.0
            logger.warning("%s: staying out of the group %.1fs before joining again", self.name, delay)
            self.stopping.wait(delay)
        self._watch = UnownedLagWatch(threshold_s=settings.CONSUMER_UNOWNED_LAG_RESTART_S)
        self._idle_watch = OwnedIdleWatch(threshold_s=settings.CONSUMER_UNOWNED_LAG_RESTART_S)
        self._assigned = []
        self._cluster_id = None
        self._read_from_start, self._cluster_replaced = self._cluster_replaced, False
        # Dead letters an older release wrote have no scope yet: give them theirs before reading a message.
        if filled := deadletter_fill_scopes(group=self.group):
            logger.info("%s: gave %d older dead letters their ordering scope", self.name, filled)
        self.consumer = Consumer({**consumer_config(self.group_id), "client.id": f"logiflow-{self.group_id}"})
        self.consumer.subscribe(
            [kafka_topic(t) for t in self.topics], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        logger.info("%s subscribed to %s as group %s", self.name, ", ".join(self.topics), self.group_id)

    def run_once(self) -> bool:
        """One poll and its batch; True when messages were applied or recorded (progress resets the restart
        backoff; an empty poll does not)."""
        assert self.consumer is not None
        batch: list[Message] = []
        for message in self._poll():
            error = message.error()
            if error is None:
                batch.append(message)
            elif error.fatal():
                raise KafkaException(error)
            elif not self._connectivity.note(error):  # a connectivity error is logged only if still true
                logger.warning("%s: %s", self.name, error)
        self._connectivity.check(self.consumer)
        if batch:
            self._idle_watch.fed({(str(message.topic()), int(message.partition() or 0)) for message in batch})
            self.process(batch)
            self.heartbeat.progress()
        if self._lag_sampled_at is None or time.monotonic() - self._lag_sampled_at >= settings.CONSUMER_LAG_INTERVAL_S:
            self.sample_lag()
            self.watch_ownership()
        self.heartbeat.beat(partitions=self.partitions)
        if time.monotonic() - self._reported_at >= settings.CONSUMER_STATS_INTERVAL_S:
            self.report()
        return bool(batch)

    def _poll(self) -> list[Message]:
        """What has arrived, up to a batch: only the first message is waited for (up to the poll timeout).

        `consume(n, timeout)` returns only once it holds n messages or the timeout passed: an idle consumer fed
        200 events/s waited the whole poll timeout for each batch (a second of latency for every event)."""
        assert self.consumer is not None
        messages = self.consumer.consume(num_messages=1, timeout=self.poll_timeout)
        if messages and self.batch_size > 1:
            messages += self.consumer.consume(num_messages=self.batch_size - 1, timeout=0)
        return messages

    def teardown(self) -> None:
        """Commit what was stored and leave the group, so the partitions move on at once."""
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            if not self._cluster_replaced:
                self._commit(consumer)
            consumer.close()
        if self.stopping.is_set():
            self.heartbeat.remove()  # a clean stop is not a silent consumer
        self._set_lag([])
        self.report()

    def sample_lag(self, *, timeout: float = 5.0) -> list[dict[str, object]]:
        """Lag of each assigned partition: high watermark minus committed offset (minus the low watermark when
        nothing is committed yet). A broker round trip per partition, so it runs every CONSUMER_LAG_INTERVAL_S
        and all of it within `timeout` (it runs between batches, inside max.poll.interval.ms); an unanswered
        request leaves the last sample in place."""
        self._lag_sampled_at = time.monotonic()
        deadline = self._lag_sampled_at + timeout
        if self.consumer is None:
            return self.partitions
        try:
            read = read_positions(self.consumer, self.consumer.assignment(), deadline=deadline)
        except KafkaException as error:
            logger.info("%s: lag not sampled: %s", self.name, error)
            return self.partitions
        self._assigned = self._fetch_positions([position for _, position in read])
        sample = [
            {"topic": stored.topic, "partition": stored.partition, "committed": stored.offset,
             "high": position.high, "lag": position.lag}
            for stored, position in read
        ]
        self._set_lag(sorted(sample, key=lambda p: (p["topic"], p["partition"])))
        return self.partitions

    def _fetch_positions(self, positions: list[Position]) -> list[Position]:
        """`positions` with this member's fetch position where it is ahead of the committed offset (commits trail
        the work by up to auto.commit.interval.ms): the owned-idle watch asks whether messages are left to fetch,
        not whether they are committed."""
        if not positions or self.consumer is None:
            return positions
        try:
            fetched = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(
                [TopicPartition(p.topic, p.partition) for p in positions])}
        except KafkaException:
            return positions
        return [
            replace(p, committed=max(p.committed, fetched.get((p.topic, p.partition), -1))) for p in positions
        ]

    def watch_ownership(self, *, timeout: float = 5.0) -> None:
        """Raise GroupStalled when partitions of the group's topics have had lag and no progress for
        CONSUMER_UNOWNED_LAG_RESTART_S, either with no owner among the live consumers or assigned to this member
        and feeding it nothing (apps.consumers.watchdog); `run_worker` then rejoins with a fresh consumer.
        Without an answer from the database or the broker it checks nothing."""
        if self.consumer is None:
            return
        self._check_cluster(timeout=timeout)
        if not settings.CONSUMER_UNOWNED_LAG_RESTART_S:
            return
        self._rejoin_if(self._idle_watch.observe(self._assigned))
        try:
            owned = {(topic, partition) for (group, topic, partition) in live_partitions() if group == self.group}
        except DatabaseError:
            return  # heartbeats unreadable: the outage shows in the work itself
        try:
            owned |= {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            positions = group_positions(self.consumer, self.topics, excluding=owned, timeout=timeout)
        except KafkaException as error:
            logger.info("%s: partition ownership not checked: %s", self.name, error)
            return
        self._rejoin_if(self._watch.observe(positions, owned=owned))

    def _check_cluster(self, *, timeout: float) -> None:
        """A broker replaced by an empty cluster on the same address (a new cluster id) leaves this consumer's group
        state, coordinator and fetch positions about a cluster that is gone: chaos runs saw both members of a group
        lose their partitions and never get them back until the unowned-lag watch, two minutes later. A fresh
        consumer joins the new cluster's group at once."""
        assert self.consumer is not None
        try:
            cluster_id = self.consumer.list_topics(timeout=timeout).cluster_id
        except KafkaException:
            return  # unanswered: nothing learnt
        if not cluster_id:
            return
        if self._cluster_id is None:
            self._cluster_id = cluster_id
        elif cluster_id != self._cluster_id:
            self._cluster_replaced = True
            CONSUMER_REJOINS.labels(self.group).inc()
            raise GroupStalled(
                f"{self.name}: the broker's cluster id {self._cluster_id} became {cluster_id}; joining the new "
                "cluster's group with a fresh consumer, reading from the beginning"
            )

    def _rejoin_if(self, stalls: list[Stall]) -> None:
        if stalls:
            CONSUMER_REJOINS.labels(self.group).inc()
            self._rejoin_delay = random.uniform(0, settings.CONSUMER_REJOIN_JITTER_S)  # noqa: S311 - not a secret
            raise GroupStalled(f"{self.name}: {', '.join(map(str, stalls))}; leaving the group to join it again")

    def _set_lag(self, sample: list[dict[str, object]]) -> None:
        self.partitions = sample
        labels = {(self.group, str(p["topic"]), str(p["partition"])) for p in sample}
        for gone in self._lag_labels - labels:  # revoked partitions: someone else reports them now
            CONSUMER_LAG.remove(*gone)
        for p in sample:
            # The sample's rows are JSON-shaped dicts; "lag" is always an int there.
            CONSUMER_LAG.labels(self.group, p["topic"], str(p["partition"])).set(p["lag"])  # type: ignore[arg-type]
        self._lag_labels = labels

    def report(self) -> None:
        self._reported_at = time.monotonic()
        logger.info("%s: %s", self.name, self.counters)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """After a replaced cluster, the group's committed offsets in the new one may be the old log's (commits of
        the consumer that had not noticed yet), beyond messages the new log holds: the first partitions are read
        from their beginning instead. The repeats are harmless (the inbox), a skipped message would not be."""
        if not (self._read_from_start and partitions):
            return
        self._read_from_start = False
        for partition in partitions:
            partition.offset = OFFSET_BEGINNING
        if settings.KAFKA_ASSIGNMENT_STRATEGY == "cooperative-sticky":
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        logger.warning("%s: the cluster was replaced; reading %d partitions from their beginning", self.name,
                       len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called from inside consume(), i.e. between batches: everything stored is done.
        self._commit(consumer)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.warning(
            "%s lost %d partitions; their uncommitted messages will be redelivered", self.name, len(partitions)
        )

    def _commit(self, consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as error:
            if error.args[0].code() != KafkaError._NO_OFFSET:
                logger.warning("%s: offset commit failed: %s", self.name, error)

    # --- a batch -----------------------------------------------------------------------------------------

    def process(self, messages: list[Message]) -> None:
        """Apply `messages` in order; offsets of each committed prefix are stored as soon as it committed."""
        items = [self._item(message) for message in messages]
        self._retry_left = settings.CONSUMER_RETRY_BATCH_BUDGET_S  # seconds of retries, for the whole batch
        before = self.counters.snapshot()
        try:
            start = 0
            while start < len(items):
                try:
                    self._run_batch(items, start)
                    start = len(items)
                except _Retry as retry:
                    if not self._retry_alone(items[retry.index], retry.error):
                        return  # stopping: the rest stays unstored and is redelivered to whoever comes next
                    start = retry.index + 1
        finally:
            after = self.counters.snapshot()
            for name, outcome in OUTCOMES.items():
                if after[name] > before[name]:
                    CONSUMER_MESSAGES.labels(self.group, outcome).inc(after[name] - before[name])

    def _run_batch(self, items: list[_Item], start: int) -> None:
        """One transaction for items[start:]; on a retryable failure, commit and store the prefix, raise _Retry."""
        committed: list[bool] = []
        failed: _Retry | None = None
        try:
            with transaction.atomic():
                transaction.on_commit(lambda: committed.append(True))
                known = _Known(heads=self._heads(items[start:]), ledger=ledger_statuses(
                    group=self.group, message_ids=[item.identity.message_id for item in items[start:]]
                ))
                failed = self._apply_from(items, start, known)
        except Exception:
            if not committed:
                raise
            # A handler's on_commit callback raised after the commit: the batch itself is done.
            logger.exception("%s: an on_commit callback failed after the batch committed", self.name)
        end = failed.index if failed else len(items)
        self._store(items[start:end])
        if failed:
            raise failed

    def _apply_from(self, items: list[_Item], start: int, known: _Known) -> _Retry | None:
        """Apply items[start:] in order, runs of batch-capable messages at once; the first retryable failure."""
        index = start
        while index < len(items):
            end = self._run_end(items, index, known)
            if end > index and self._apply_run(items[index:end]):
                index = end
                continue
            for position in range(index, max(end, index + 1)):  # the run one by one, or just this item
                try:
                    self._apply(items[position], known)
                except _Retry as retry:
                    return _Retry(position, retry.error)
            index = max(end, index + 1)
        return None

    def _run_end(self, items: list[_Item], start: int, known: _Known) -> int:
        """End (exclusive) of the run from `start` that one batch handler call may apply: messages of one
        registration with a batch handler whose scopes are not parked and that the ledger does not hold, and
        skipped types between them."""
        registration = None
        end = start
        for index in range(start, len(items)):
            decoded = items[index].decoded
            if items[index].identity.message_id in known.ledger:
                break
            if decoded is SKIP:
                continue
            if not isinstance(decoded, Decoded) or decoded.registration.batch_handler is None:
                break
            if registration is not None and decoded.registration is not registration:
                break
            if items[index].scope in known.heads:
                break
            registration = decoded.registration
            end = index + 1
        return end

    def _apply_run(self, run: list[_Item]) -> bool:
        """Apply a run through its batch handler; False (nothing applied) if it raised and the run must go one
        message at a time."""
        decoded = [item.decoded for item in run if isinstance(item.decoded, Decoded)]
        try:
            with CONSUMER_HANDLER_SECONDS.labels(self.group).time():
                applied = inbox_apply_many(decoded=decoded)
        except Exception as error:
            if _is_outage(error):
                raise
            logger.info("%s: batch of %d failed (%s); applying it message by message", self.name, len(decoded),
                        redact_error(error)[:200])
            return False
        self.counters.skipped += len(run) - len(decoded)
        for was_new in applied:
            self._count(was_new)
        return True

    def _heads(self, items: list[_Item]) -> dict[bytes, int]:
        """scope -> head dead letter for the batch's scopes: one query, plus a lock and re-read for blocked ones."""
        scopes = sorted({item.scope for item in items if item.scope is not None})
        heads = blocking_heads(group=self.group, scopes=scopes) if scopes else {}
        if heads:
            # A concurrent replay may be resolving these heads: wait for it and read the outcome.
            lock_blocked(group=self.group, heads=heads)
            heads = blocking_heads(group=self.group, scopes=list(heads))
        return heads

    def _apply(self, item: _Item, known: _Known) -> None:
        decoded, heads = item.decoded, known.heads
        status = known.ledger.get(item.identity.message_id)
        if status is not None:
            # A message the ledger holds, at its old offset or a new one (a re-published event, a rebuilt
            # broker): the ledger decides. Replayed: applied once already.
            # Discarded: stays discarded. Unresolved: it waits in the ledger (its scope's later messages park
            # behind it through `heads` as before). Nothing is run, nothing new is recorded.
            if status == DeadLetter.Status.REPLAYED:
                self.counters.duplicates += 1
            else:
                self.counters.in_ledger += 1
            return
        if decoded is SKIP:
            self.counters.skipped += 1
            return
        head = heads.get(item.scope) if item.scope is not None else None
        if head is not None:
            self._record(item, parked_failure(head), attempts=0, blocked_by_id=head)
            self.counters.parked += 1
            return
        if isinstance(decoded, DecodeFailure):
            self._dead_letter(item, Failure.from_exception(decoded), heads, attempts=1)
            return
        assert isinstance(decoded, Decoded)
        try:
            with CONSUMER_HANDLER_SECONDS.labels(self.group).time():
                applied = inbox_apply(decoded=decoded)
        except registry.NonRetryableError as error:
            self._dead_letter(item, Failure.from_exception(error, handler=decoded.registration.name), heads, attempts=1)
            return
        except Exception as error:
            if _is_outage(error):
                raise
            raise _Retry(-1, error) from error
        self._count(applied)

    def _retry_alone(self, item: _Item, error: Exception) -> bool:
        """Retry a failed message in its own transactions with backoff, within what is left of the batch's retry
        budget; then hand it to the ledger as `retrying` (automatic retries later, its scope parked behind it).

        The budget is per batch, so a batch of failing messages holds its partitions for at most
        CONSUMER_RETRY_BATCH_BUDGET_S of retries, far from max.poll.interval.ms (see `check_retry_settings`).
        Returns False if the worker was asked to stop meanwhile (the message is then left for redelivery).
        """
        started = time.monotonic()
        try:
            return self._retry_within(item, error, started + self._retry_left)
        finally:
            self._retry_left = max(0.0, self._retry_left - (time.monotonic() - started))

    def _retry_within(self, item: _Item, error: Exception, deadline: float) -> bool:
        assert isinstance(item.decoded, Decoded)
        decoded = item.decoded
        first_failed_at = timezone.now()
        delay = settings.CONSUMER_RETRY_BACKOFF_INITIAL_S
        attempts = 1
        while attempts < settings.CONSUMER_MAX_ATTEMPTS:
            if time.monotonic() + delay > deadline:
                break
            with item.logged():
                logger.info("%s: %s failed (%s), retry %d in %.2fs", self.name, decoded.meta.event_id,
                            redact_error(error), attempts, delay)
            if self.stopping.wait(delay):
                return False
            delay = min(delay * 2, settings.CONSUMER_RETRY_BACKOFF_MAX_S)
            attempts += 1
            self.counters.retries += 1
            try:
                with transaction.atomic():
                    applied = inbox_apply(decoded=decoded)
            except registry.NonRetryableError as refused:
                error = refused
                break
            except Exception as failure:
                if _is_outage(failure):
                    raise
                error = failure
                continue
            self._store([item])
            self._count(applied)
            return True
        self._dead_letter(item, Failure.from_exception(error, handler=decoded.registration.name), {},
                          attempts=attempts, first_failed_at=first_failed_at, auto_retry=True)
        self._store([item])
        return True

    def _dead_letter(
        self, item: _Item, failure: Failure, heads: dict[bytes, int], *, attempts: int,
        first_failed_at: datetime | None = None, auto_retry: bool = False,
    ) -> None:
        dead_letter = self._record(item, failure, attempts=attempts, first_failed_at=first_failed_at,
                                   auto_retry=auto_retry)
        if item.scope is not None and dead_letter is not None and dead_letter.is_unresolved \
                and dead_letter.blocked_by_id is None:
            heads[item.scope] = dead_letter.pk  # later messages of its scope in the batch park behind it
        self.counters.dead_lettered += 1
        with item.logged():
            logger.warning("%s: dead-lettered %s [%d] @%d as #%s, %s (%s: %r)", self.name, item.raw.topic,
                           item.raw.partition, item.raw.offset, dead_letter.pk if dead_letter else "?",
                           dead_letter.status if dead_letter else "?", failure.reason, redact(failure.message)[:200])

    def _record(
        self, item: _Item, failure: Failure, *, attempts: int, first_failed_at: datetime | None = None,
        blocked_by_id: int | None = None, auto_retry: bool = False,
    ) -> DeadLetter | None:
        """Record the message in the ledger; recording must not fail, so a failure to record in full is
        recorded minimally (raw bytes, reason, what went wrong) and the message leaves the partition anyway.
        Only a database outage escapes (the worker reconnects and reads the message again)."""
        try:
            return deadletter_record(
                group=self.group, raw=item.raw, failure=failure, attempts=attempts, first_failed_at=first_failed_at,
                blocked_by_id=blocked_by_id, auto_retry=auto_retry, known=(item.identity, item.scope),
            )
        except Exception as error:
            if _is_outage(error):
                raise
            logger.exception("%s: could not record %s [%d] @%d in full; recording it minimally", self.name,
                             item.raw.topic, item.raw.partition, item.raw.offset)
            deadletter_record_minimal(group=self.group, raw=item.raw, failure=failure, error=error,
                                      blocked_by_id=blocked_by_id, known=(item.identity, item.scope))
            return ledger_row(group=self.group, raw=item.raw)

    def _count(self, applied: bool) -> None:
        if applied:
            self.counters.handled += 1
        else:
            self.counters.duplicates += 1

    def _store(self, items: list[_Item]) -> None:
        if not items or self.consumer is None:
            return
        offsets: dict[tuple[str, int], int] = {}
        now = timezone.now()
        end_to_end = CONSUMER_END_TO_END.labels(self.group)
        for item in items:
            if isinstance(item.decoded, Decoded):  # committed just now: the event's trip ends here
                end_to_end.observe(max(0.0, (now - item.decoded.meta.time).total_seconds()))
            position = (item.raw.topic, item.raw.partition)
            offsets[position] = max(offsets.get(position, 0), item.raw.offset + 1)
        try:
            self.consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        except KafkaException as error:
            # The partition was revoked meanwhile: its new owner redelivers, the inbox makes that a no-op.
            logger.warning("%s: could not store offsets: %s", self.name, error)

    def _item(self, message: Message) -> _Item:
        """The message as bytes, decoded; nothing in a foreign message may raise out of here."""
        unreadable: Exception | None = None
        try:
            headers = cast(list[tuple[str, bytes | None]], list(message.headers() or []))
        except Exception as error:  # noqa: BLE001 - e.g. a header name that is not UTF-8
            headers, unreadable = [], error
        # A polled message that is not an error event always has its place (the client types them optional).
        raw = RawMessage(
            topic=cast(str, message.topic()), partition=cast(int, message.partition()),
            offset=cast(int, message.offset()), key=message.key(), value=message.value(), headers=headers,
        )
        decoded: Decoded | Skip | DecodeFailure
        if unreadable is not None:
            decoded = DecodeFailure(DeadLetter.Reason.MISSING_HEADERS, f"unreadable headers: {unreadable}")
            return _Item(message=message, raw=raw, decoded=decoded, identity=identity(raw))
        try:
            decoded = decode(raw, group=self.group)
        except DecodeFailure as failure:
            decoded = failure
        except Exception as error:  # noqa: BLE001 - a decoder bug must not wedge the partition either
            why = f"could not decode: {type(error).__name__}: {error}"
            decoded = DecodeFailure(DeadLetter.Reason.INVALID_PAYLOAD, why)
        return _Item(message=message, raw=raw, decoded=decoded, identity=identity(raw))


LIBRDKAFKA_MAX_POLL_INTERVAL_MS = 300_000
RETRY_BUDGET_SHARE = 3  # the batch's retries may use at most a third of max.poll.interval.ms


def check_retry_settings(*, max_poll_interval_ms: int) -> None:
    """Refuse to start with retry settings that could hold partitions past max.poll.interval.ms (the group
    would eject the consumer and hand its partitions to another member while it still works on them)."""
    budget = settings.CONSUMER_RETRY_BATCH_BUDGET_S
    problems = []
    if not 0 <= budget * 1000 * RETRY_BUDGET_SHARE <= max_poll_interval_ms:
        problems.append(
            f"CONSUMER_RETRY_BATCH_BUDGET_S={budget:g} must be between 0 and a third of max.poll.interval.ms "
            f"({max_poll_interval_ms} ms, so at most {max_poll_interval_ms / 1000 / RETRY_BUDGET_SHARE:g} s): the "
            "batch's own work needs the rest"
        )
    if settings.CONSUMER_MAX_ATTEMPTS < 1:
        problems.append(f"CONSUMER_MAX_ATTEMPTS={settings.CONSUMER_MAX_ATTEMPTS} must be at least 1")
    if not 0 < settings.CONSUMER_RETRY_BACKOFF_INITIAL_S <= settings.CONSUMER_RETRY_BACKOFF_MAX_S:
        problems.append("CONSUMER_RETRY_BACKOFF_INITIAL_S must be positive and at most CONSUMER_RETRY_BACKOFF_MAX_S")
    if settings.CONSUMER_AUTO_RETRY_MAX_ATTEMPTS < 0:
        problems.append("CONSUMER_AUTO_RETRY_MAX_ATTEMPTS must not be negative")
    if not 0 < settings.CONSUMER_AUTO_RETRY_BACKOFF_INITIAL_S <= settings.CONSUMER_AUTO_RETRY_BACKOFF_MAX_S:
        problems.append(
            "CONSUMER_AUTO_RETRY_BACKOFF_INITIAL_S must be positive and at most CONSUMER_AUTO_RETRY_BACKOFF_MAX_S"
        )
    if problems:
        raise ImproperlyConfigured("consumer retry settings: " + "; ".join(problems))


def _max_poll_interval_ms(config: dict[str, object]) -> int:
    value = config.get("max.poll.interval.ms", LIBRDKAFKA_MAX_POLL_INTERVAL_MS)
    try:
        return int(value)  # type: ignore[call-overload] # any object: what int() refuses is handled below
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"max.poll.interval.ms={value!r} is not a number of milliseconds") from None


def _is_outage(error: Exception) -> bool:
    """A database that went away is not the message's fault: reconnect instead of dead-lettering."""
    return isinstance(error, (OperationalError, InterfaceError)) and not connection.is_usable()
