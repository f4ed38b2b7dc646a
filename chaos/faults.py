"""The seeded fault schedule, and what each fault does to the running stack.

The same CHAOS_SEED and CHAOS_SECONDS give the same schedule (times, kinds, targets, durations); what the
stack does in between depends on timing, so two runs of one seed are alike, not identical.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from confluent_kafka import KafkaException

from chaos.hostile import TOPICS, Injector
from chaos.refusal import Window, read_window
from chaos.stack import CONSUMERS, RELAYS, Stack

logger = logging.getLogger("chaos")

TARGETS = {"kill_relay": RELAYS, "kill_consumer": CONSUMERS, "kill_celery": ("celery",), "hostile": tuple(TOPICS)}
WEIGHTS = {
    "kill_relay": 2, "kill_consumer": 3, "kill_celery": 1, "pause_broker": 1, "terminate_backends": 2, "hostile": 2,
    "replace_broker": 1, "kill_broker": 1, "refuse_topic": 1,
}
KINDS = tuple(WEIGHTS)
# Faults on the broker: one at a time, each given time to recover before the next (a paused broker is not
# replaced, a node is not killed while the cluster is being rebuilt, and while a topic is refused the other one
# has a working broker, so that its flow can be measured).
BROKER_KINDS = ("pause_broker", "replace_broker", "kill_broker", "refuse_topic")
CLUSTER_KINDS = ("kill_broker",)  # need a cluster that survives the loss of a node
AUTHORIZER_KINDS = ("refuse_topic",)  # need a broker with an authorizer (Apache Kafka with SASL and ACLs)
# The topic refuse_topic denies the relay: invoicing's. Its events follow from routing's (an invoice from a route),
# so while it is refused routing.events keeps its own traffic and can be seen to flow; refusing routing.events
# would starve invoicing.events of new events and leave nothing to measure.
REFUSED_TOPIC = "invoicing.events"
OTHER_TOPIC = "routing.events"
WARM_UP_S = 10.0
GAP_S = (5.0, 15.0)  # between two faults
PAUSE_S = (5.0, 30.0)  # the broker stopped (SIGSTOP) this long
RESTART_S = (1.0, 3.0)  # a killed process is started again after this long
REFUSE_S = (15.0, 30.0)  # the relay's principal denied writes to REFUSED_TOPIC this long
REFUSE_SETTLE_S = 5.0  # after the lift, before the next broker fault
LIFT_RETRY_S = 2.0  # a lift the broker did not take is tried again this much later
NODE_DOWN_S = (3.0, 10.0)  # a killed broker node is started again after this long
NODE_SETTLE_S = 20.0  # a restarted node catching up (its replicas back in sync) before the next broker fault
REPLACE_SETTLE_S = 40.0  # an empty broker started, the topics created, the relays' window re-sent
APPLICATION_NAME = "logiflow-chaos"  # the driver's own connections, which pg_terminate_backend spares


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the traffic started
    kind: str
    target: str = ""  # the process killed, or the topic written to
    seconds: float = 0.0  # how long the broker stays paused or the topic refused, or the killed process stays down


def runnable_kinds(wanted: tuple[str, ...], *, broker: str, kafka_nodes: int) -> tuple[tuple[str, ...], dict[str, str]]:
    """The kinds of `wanted` this broker can take, and why each other one is skipped."""
    skipped = {}
    for kind in AUTHORIZER_KINDS:
        if kind in wanted and broker != "kafka":
            skipped[kind] = f"{broker} has no authorizer to refuse a topic with"
    for kind in CLUSTER_KINDS:
        if kind not in wanted:
            continue
        if broker != "kafka":
            skipped[kind] = f"{broker} is one node: no other broker to fail over to"
        elif kafka_nodes < 3:
            skipped[kind] = (f"the Apache Kafka cluster has {kafka_nodes} node(s) (CHAOS_KAFKA_NODES): killing one "
                             "would stop the cluster, not fail it over (3 or more)")
    return tuple(kind for kind in wanted if kind not in skipped), skipped


def schedule(seed: int, seconds: float, kinds: tuple[str, ...] = KINDS, *, kafka_nodes: int = 3) -> list[Fault]:
    """Every kind once first (in a seeded order, so a short run sees them all), then weighted draws; one broker
    fault at a time (a pause, a node down, a replacement), each over before the next and before `seconds`.
    `kinds` narrows the faults (to isolate a failure); `kafka_nodes` are kill_broker's targets."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"fault kinds must be some of {', '.join(KINDS)}; got {', '.join(kinds) or 'none'}")
    rng = random.Random(seed)
    weights = {kind: weight for kind, weight in WEIGHTS.items() if kind in kinds}
    first = list(weights)
    rng.shuffle(first)
    faults: list[Fault] = []
    at, broker_free_at = WARM_UP_S, 0.0
    while True:
        at += rng.uniform(*GAP_S)
        if at >= seconds:
            return faults
        possible = [kind for kind in first if kind not in BROKER_KINDS or at >= broker_free_at]
        if first and not possible:
            continue  # only broker faults left to place first, and the broker is still busy
        kind = first.pop(first.index(possible[0])) if first else rng.choices(list(weights), list(weights.values()))[0]
        if kind in BROKER_KINDS and at < broker_free_at:
            continue  # one broker fault at a time
        if kind == "pause_broker":
            if at + PAUSE_S[0] > seconds:
                continue  # over before the end
            length = math.floor(min(rng.uniform(*PAUSE_S), seconds - at) * 10) / 10  # tenths, never past the end
            broker_free_at = at + length
            faults.append(Fault(at, kind, seconds=length))
        elif kind == "refuse_topic":
            if at + REFUSE_S[0] > seconds:
                continue  # lifted before the end
            length = math.floor(min(rng.uniform(*REFUSE_S), seconds - at) * 10) / 10
            broker_free_at = at + length + REFUSE_SETTLE_S
            faults.append(Fault(at, kind, target=REFUSED_TOPIC, seconds=length))
        elif kind == "kill_broker":
            down = round(rng.uniform(*NODE_DOWN_S), 1)
            broker_free_at = at + down + NODE_SETTLE_S
            faults.append(Fault(at, kind, target=str(rng.randint(1, kafka_nodes)), seconds=down))
        elif kind == "replace_broker":
            broker_free_at = at + REPLACE_SETTLE_S
            faults.append(Fault(at, kind))
        elif kind.startswith("kill_"):
            faults.append(Fault(at, kind, target=rng.choice(TARGETS[kind]), seconds=round(rng.uniform(*RESTART_S), 1)))
        elif kind == "hostile":
            faults.append(Fault(at, kind, target=rng.choice(TARGETS[kind])))
        else:
            faults.append(Fault(at, kind))


class FaultRunner:
    """Applies a schedule to the stack in real time and counts what it did."""

    def __init__(self, stack: Stack, injector: Injector, faults: list[Fault]) -> None:
        self.stack = stack
        self.injector = injector
        self.faults = faults
        self.counts: Counter[str] = Counter()
        self.backends_terminated = 0
        self.windows: list[Window] = []  # each refusal of a topic, read as it was lifted
        self._refused: tuple[str, datetime] | None = None  # the topic refused now, since when
        self._lift_at: float | None = None

    def run(self, *, started: float, until: float) -> None:
        """Apply each fault at its time until `until` (monotonic); the broker is running again on return."""
        pending = list(self.faults)
        resume_at: float | None = None
        try:
            while time.monotonic() < until:
                now = time.monotonic()
                if resume_at is not None and now >= resume_at:
                    self.stack.resume_broker()
                    logger.info("t=%.0fs broker resumed", now - started)
                    resume_at = None
                if self._lift_at is not None and now >= self._lift_at:
                    self._lift(started)
                while pending and started + pending[0].at <= now:
                    fault = pending.pop(0)
                    logger.info("t=%.0fs %s%s%s", fault.at, fault.kind, f" {fault.target}" if fault.target else "",
                                f" ({fault.seconds}s)" if fault.seconds else "")
                    if fault.kind == "pause_broker":
                        resume_at = now + fault.seconds
                    elif fault.kind == "refuse_topic":
                        self._lift_at = now + fault.seconds
                    self._apply(fault)
                    self.counts[fault.kind] += 1
                self.injector.poll()
                time.sleep(0.2)
        finally:
            self.stack.resume_broker()
            deadline = time.monotonic() + 30
            while self._refused is not None and time.monotonic() < deadline:
                self._lift(started)
                if self._refused is not None:
                    time.sleep(LIFT_RETRY_S)

    def _lift(self, started: float) -> None:
        assert self._refused is not None
        topic, since = self._refused
        lifting = datetime.now(UTC)
        try:
            self.stack.lift_refusal(topic)
        except (KafkaException, TimeoutError) as error:
            logger.warning("the refusal of %s not lifted yet (%s); trying again", topic, error)
            self._lift_at = time.monotonic() + LIFT_RETRY_S
            return
        ended = datetime.now(UTC)
        self._refused, self._lift_at = None, None
        try:
            with psycopg.connect(self.stack.database_url, autocommit=True, application_name=APPLICATION_NAME,
                                 connect_timeout=10) as conn:
                window = read_window(conn, topic=topic, other=OTHER_TOPIC, started=since, lifting=lifting,
                                     ended=ended)
        except psycopg.Error as error:  # no window recorded: the check says the refusal was not measured
            logger.warning("the refusal of %s not measured: %s", topic, error)
            return
        self.windows.append(window)
        logger.info("t=%.0fs %s no longer refused to the relay after %.1fs; meanwhile %s: %d of %d rows created "
                    "published, %d invoices issued", time.monotonic() - started, topic, window.seconds, OTHER_TOPIC,
                    window.other_published, window.other_created, window.invoices_issued)

    def _apply(self, fault: Fault) -> None:
        if fault.kind == "kill_broker":
            self.stack.kill_broker_node(int(fault.target), restart_after=fault.seconds)
        elif fault.kind.startswith("kill_"):
            self.stack.kill(fault.target, restart_after=fault.seconds)
        elif fault.kind == "replace_broker":
            started = time.monotonic()
            self.injector.flush(timeout=10)  # what the old broker acknowledged is known as its, before it goes
            self.stack.replace_broker()
            self.injector.generation = self.stack.broker_generation
            logger.info("an empty broker serves on the same address after %.0fs; topics created",
                        time.monotonic() - started)
        elif fault.kind == "pause_broker":
            self.stack.pause_broker()
        elif fault.kind == "terminate_backends":
            try:
                self.backends_terminated += terminate_backends(self.stack.database_url)
            except psycopg.Error as error:
                logger.warning("pg_terminate_backend failed: %s", error)
        elif fault.kind == "hostile":
            self.injector.inject_all(fault.target)
        elif fault.kind == "refuse_topic":
            try:
                self.stack.refuse_topic(fault.target)
            except (KafkaException, TimeoutError) as error:  # no window recorded: the check says it was not run
                logger.warning("the refusal of %s not applied: %s", fault.target, error)
                self._lift_at = None
                with contextlib.suppress(KafkaException, TimeoutError):
                    self.stack.lift_refusal(fault.target)  # a denial made but not shown yet must not outlive the run
                return
            self._refused = (fault.target, datetime.now(UTC))
        else:
            raise ValueError(f"unknown fault {fault.kind!r}")


def terminate_backends(database_url: str) -> int:
    """pg_terminate_backend on every application connection to the database; the driver's own are spared."""
    with psycopg.connect(database_url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND application_name <> %s",
            [APPLICATION_NAME],
        ).fetchone()
    return int(row[0])
