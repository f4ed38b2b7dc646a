"""The seeded fault schedule, and what each fault does to the running stack.

The same CHAOS_SEED and CHAOS_SECONDS give the same schedule (times, kinds, targets, durations); what the
stack does in between depends on timing, so two runs of one seed are alike, not identical.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass

import psycopg

from chaos.hostile import TOPICS, Injector
from chaos.stack import CONSUMERS, RELAYS, Stack

logger = logging.getLogger("chaos")

TARGETS = {"kill_relay": RELAYS, "kill_consumer": CONSUMERS, "kill_celery": ("celery",), "hostile": tuple(TOPICS)}
WEIGHTS = {
    "kill_relay": 2, "kill_consumer": 3, "kill_celery": 1, "pause_broker": 1, "terminate_backends": 2, "hostile": 2,
}
KINDS = tuple(WEIGHTS)
WARM_UP_S = 10.0
GAP_S = (5.0, 15.0)  # between two faults
PAUSE_S = (5.0, 30.0)  # the broker stopped (SIGSTOP) this long
RESTART_S = (1.0, 3.0)  # a killed process is started again after this long
APPLICATION_NAME = "logiflow-chaos"  # the driver's own connections, which pg_terminate_backend spares


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the traffic started
    kind: str
    target: str = ""  # the process killed, or the topic written to
    seconds: float = 0.0  # how long the broker stays paused, or the killed process stays down


def schedule(seed: int, seconds: float, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """Every kind once first (in a seeded order, so a short run sees them all), then weighted draws; one
    broker pause at a time, ending before `seconds`. `kinds` narrows the faults (to isolate a failure)."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"fault kinds must be some of {', '.join(KINDS)}; got {', '.join(kinds) or 'none'}")
    rng = random.Random(seed)
    weights = {kind: weight for kind, weight in WEIGHTS.items() if kind in kinds}
    first = list(weights)
    rng.shuffle(first)
    faults: list[Fault] = []
    at, paused_until = WARM_UP_S, 0.0
    while True:
        at += rng.uniform(*GAP_S)
        if at >= seconds:
            return faults
        kind = first.pop(0) if first else rng.choices(list(weights), weights=list(weights.values()))[0]
        if kind == "pause_broker" and (at < paused_until or at + PAUSE_S[0] > seconds):
            continue  # one pause at a time, over before the end
        if kind == "pause_broker":
            length = min(rng.uniform(*PAUSE_S), seconds - at)
            paused_until = at + length
            faults.append(Fault(at, kind, seconds=round(length, 1)))
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
                while pending and started + pending[0].at <= now:
                    fault = pending.pop(0)
                    logger.info("t=%.0fs %s%s%s", fault.at, fault.kind, f" {fault.target}" if fault.target else "",
                                f" ({fault.seconds}s)" if fault.seconds else "")
                    if fault.kind == "pause_broker":
                        resume_at = now + fault.seconds
                    self._apply(fault)
                    self.counts[fault.kind] += 1
                self.injector.poll()
                time.sleep(0.2)
        finally:
            self.stack.resume_broker()

    def _apply(self, fault: Fault) -> None:
        if fault.kind.startswith("kill_"):
            self.stack.kill(fault.target, restart_after=fault.seconds)
        elif fault.kind == "pause_broker":
            self.stack.pause_broker()
        elif fault.kind == "terminate_backends":
            try:
                self.backends_terminated += terminate_backends(self.stack.database_url)
            except psycopg.Error as error:
                logger.warning("pg_terminate_backend failed: %s", error)
        elif fault.kind == "hostile":
            self.injector.inject_all(fault.target)
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
