"""What the logs say when an invariant fails: per process, its most frequent exceptions and warnings, counted,
and a worker's last progress line (a consumer that stopped counting "handled" is stuck)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

EXCEPTION = re.compile(r"^\S*(Error|Exception|Exit)\b")  # "psycopg.errors.DataError: …"
# A logged error (Django's, Celery's or gunicorn's format), a worker giving up and restarting, a consumer losing
# its partitions, or a librdkafka warning ("%4|…").
WARNING = re.compile(r".*\b(ERROR|CRITICAL)\b|.*failed; reconnecting|.* lost \d+ partitions|^%[0-4]\|")
PROGRESS = re.compile(r"consumer\[\w+\]: handled=|relay stopped: ")
NOISE = re.compile(r"0x[0-9a-f]+|\b[0-9a-f]{8}-[0-9a-f-]{27}\b|\d+")


def log_errors(log_dir: Path, *, exceptions: int = 3, warnings: int = 2, width: int = 220) -> list[str]:
    """Lines `<log>: <count>× <line>` (numbers and ids normalised for counting) and `<log>: last <progress line>`."""
    lines = []
    for path in sorted(log_dir.glob("*.log")):
        found = {EXCEPTION: Counter(), WARNING: Counter()}
        example: dict[str, str] = {}
        progress = ""
        with path.open(errors="replace") as log:
            for line in log:
                line = line.rstrip()
                if PROGRESS.search(line):
                    progress = line
                for pattern, counts in found.items():
                    if pattern.match(line):
                        shape = NOISE.sub("#", line)  # timestamps, pids, ids and offsets alike
                        counts[shape] += 1
                        example.setdefault(shape, line)
                        break
        for counts, most in ((found[EXCEPTION], exceptions), (found[WARNING], warnings)):
            lines += [f"{path.name}: {count}× {example[shape][:width]}" for shape, count in counts.most_common(most)]
        if progress and lines and lines[-1].startswith(path.name):
            lines.append(f"{path.name}: last {progress[:width]}")
    return lines
