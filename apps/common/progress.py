"""Progress of a long command on one updating terminal line (count, rate, ETA); nothing at all in a log.

A command passes its stderr: a person at a terminal sees the line move, a supervisor's log or a pipe gets
nothing (the command's one-line summary on stdout stays the record). No dependency: a `\\r` and an ANSI
"erase to end of line" are all a terminal needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from django.core.management.base import OutputWrapper


class Stream(Protocol):
    def write(self, text: str) -> object: ...

    def flush(self) -> None: ...


ERASE_LINE = "\r\x1b[K"


def is_terminal(stream: object) -> bool:
    """True when `stream` is attached to a terminal (Django's OutputWrapper answers for the stream it wraps)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream is no terminal
        return False


class Progress:
    """`with Progress(self.stderr, "purging", total=n) as progress: ... progress.advance(k)`.

    Redraws at most every `interval` seconds; `total` (when known) adds the percentage and the ETA. On a stream
    that is not a terminal every call is a no-op, so callers need no `if`.
    """

    INTERVAL = 0.2  # seconds between redraws: fast enough to see it move, cheap enough to call per row

    def __init__(
        self, stream: Stream, label: str, *, total: int | None = None, interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream, self.label, self.total, self.clock = stream, label, total, clock
        self.interval = self.INTERVAL if interval is None else interval
        self.enabled = is_terminal(stream)
        self.done = 0
        self.started = clock()
        self._drawn_at: float | None = None

    def __enter__(self) -> Progress:
        self.draw(force=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def advance(self, count: int = 1) -> None:
        self.update(self.done + count)

    def update(self, done: int) -> None:
        self.done = done
        self.draw()

    def draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < self.interval:
            return
        self._drawn_at = now
        self._write(ERASE_LINE + self.line(now))

    def line(self, now: float) -> str:
        """E.g. `purging: 1,200/5,000 (24 %), 600/s, ETA 0:06` (no total: `purging: 1,200, 600/s`)."""
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total is None:
            return f"{self.label}: {self.done:,}, {rate:,.0f}/s"
        percent = 100 * self.done / self.total if self.total else 100.0
        text = f"{self.label}: {self.done:,}/{self.total:,} ({percent:.0f} %), {rate:,.0f}/s"
        if 0 < self.done < self.total and rate > 0:
            text += f", ETA {_clock((self.total - self.done) / rate)}"
        return text

    def close(self) -> None:
        """Erase the line, so the command's summary (on stdout) stands on a clean line."""
        if self.enabled:
            self._write(ERASE_LINE)
            self.enabled = False

    def _write(self, text: str) -> None:
        if isinstance(self.stream, OutputWrapper):
            # A command's stderr would end every write with a newline and colour it as an error.
            self.stream.write(text, style_func=str, ending="")
        else:
            self.stream.write(text)
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
