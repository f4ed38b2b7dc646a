"""Helpers for relay tests: drive a relay in-process, run real relay processes, read what they did."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.db import transaction

from apps import outbox
from apps.outbox.models import OutboxEvent
from apps.outbox.relay import OutboxRelay
from tests.factories import route_calculated
from tests.support.kafka import Received

ROOT = Path(__file__).resolve().parent.parent.parent


def pending_count() -> int:
    return OutboxEvent.objects.filter(state=OutboxEvent.State.PENDING).count()


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def drain_in_process(*, timeout: float = 30.0) -> OutboxRelay:
    """Run an in-process relay (its lanes use their own connections) until no row is pending."""
    relay = OutboxRelay()
    relay.setup()
    try:
        deadline = time.monotonic() + timeout
        while pending_count() and time.monotonic() < deadline:
            relay.run_once()
    finally:
        relay.teardown()
    return relay


def publish_routes(count: int, *, trucks: int, per_transaction: int = 500) -> list[str]:
    """Publish `count` RouteCalculated events; truck t's events carry calculation 1, 2, 3, ... in order."""
    event_ids: list[str] = []
    calculations = dict.fromkeys(range(1, trucks + 1), 0)
    for start in range(0, count, per_transaction):
        with transaction.atomic():
            for n in range(start, min(count, start + per_transaction)):
                truck = 1 + n % trucks
                calculations[truck] += 1
                event_ids.append(str(outbox.publish(route_calculated(truck_id=truck, calculation=calculations[truck]))))
    return event_ids


def assert_per_key_order(messages: list[Received]) -> None:
    """Per truck, the first appearance of each calculation number is strictly increasing on the topic."""
    seen: dict[str, set[int]] = {}
    last: dict[str, int] = {}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        calculation = json.loads(message.value)["calculation"]
        key = message.key or ""
        if calculation in seen.setdefault(key, set()):
            continue  # a duplicate (at-least-once) of an event already seen
        assert calculation > last.get(key, 0), f"truck {key}: calculation {calculation} after {last[key]}"
        seen[key].add(calculation)
        last[key] = calculation


class RelayProcess:
    """`manage.py relay_outbox` as a real process; its output is kept for the assertions."""

    def __init__(self, env: dict[str, str], log: Path, **settings: str) -> None:
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "relay_outbox"],
            env={**env, **settings}, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT,
        )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._out.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")
