"""CPU time of the benchmarks' processes (user + system, every thread), read from /proc: what an event costs
each process, and what that cost allows on this machine's cores.

A process's PostgreSQL backends are found by their `application_name` (the worker's `PGAPPNAME`, which libpq
sends): the backends are separate processes, and only the embedded PostgreSQL's run on this host.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of `pid` (all its threads) so far; None if it is gone or not readable here."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15 of proc(5)


def backend_pids(application_name: str) -> list[int]:
    """The PostgreSQL backends of the connections opened with `application_name` (empty when the server is not on
    this host: their CPU cannot be read here)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [application_name])
        pids = [pid for (pid,) in cursor.fetchall()]
    return [pid for pid in pids if cpu_seconds(pid) is not None]


@dataclass
class Meter:
    """CPU seconds used by a set of processes between `start()` and `stop()`. A process first seen at `stop()`
    (a connection opened meanwhile) counts from zero; one gone before `stop()` counts up to the last reading."""

    started: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)

    def start(self, pids: Iterable[int]) -> Meter:
        self.started = {pid: seconds for pid in pids if (seconds := cpu_seconds(pid)) is not None}
        self.last = dict(self.started)
        return self

    def stop(self, pids: Iterable[int] = ()) -> float:
        for pid in {*self.started, *pids}:
            if (seconds := cpu_seconds(pid)) is not None:
                self.last[pid] = seconds
        return sum(seconds - self.started.get(pid, 0.0) for pid, seconds in self.last.items())

    @property
    def measured(self) -> bool:
        return bool(self.last)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all this machine's cores so far (/proc/stat's first line; idle and iowait are
    not busy): the difference of two readings is what every process together used in between."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def per_event_us(seconds: float, events: int) -> float:
    return seconds * 1e6 / events


def max_per_s(cores: int, us_per_event: float) -> float:
    """Events/s that `cores` fully busy could sustain at `us_per_event` of CPU each (the bound the cost implies)."""
    return cores * 1e6 / us_per_event
