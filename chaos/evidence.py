"""What the logs say when an invariant fails: per process, its most frequent errors, counted."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

# An exception line ("psycopg.errors.DataError: …"), a logged error (Django's, Celery's or gunicorn's format),
# a worker giving up and restarting, a consumer losing its partitions, or a librdkafka warning ("%4|…").
ERROR_LINE = re.compile(
    r"^\S*(Error|Exception|Exit)\b.*|.*\b(ERROR|CRITICAL)\b.*|.*failed; reconnecting.*|.* lost \d+ partitions.*"
    r"|^%[0-4]\|"
)
NOISE = re.compile(r"0x[0-9a-f]+|\b[0-9a-f]{8}-[0-9a-f-]{27}\b|\d+")


def log_errors(log_dir: Path, *, per_log: int = 4, width: int = 220) -> list[str]:
    """Lines `<log>: <count>× <error>` for the most frequent errors of each log (numbers and ids normalised)."""
    lines = []
    for path in sorted(log_dir.glob("*.log")):
        found: Counter[str] = Counter()
        example: dict[str, str] = {}
        with path.open(errors="replace") as log:
            for line in log:
                line = line.rstrip()
                if ERROR_LINE.match(line):
                    shape = NOISE.sub("#", line)  # timestamps, pids, ids and offsets alike
                    found[shape] += 1
                    example.setdefault(shape, line)
        for shape, count in found.most_common(per_log):
            lines.append(f"{path.name}: {count}× {example[shape][:width]}")
    return lines
