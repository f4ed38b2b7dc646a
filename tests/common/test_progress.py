"""The progress line of long commands: drawn on a terminal, absent from logs and pipes."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from apps import outbox
from apps.common.progress import ERASE_LINE, Progress
from apps.consumers.models import InboxEntry
from apps.outbox.models import OutboxEvent, PendingEvent
from tests.factories import route_calculated


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a person's stderr does."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_one_line_is_redrawn_with_count_rate_percentage_and_eta() -> None:
    stream, clock = Terminal(), Clock()
    with Progress(stream, "replaying", total=100, clock=clock) as progress:
        clock.now += 10
        progress.update(25)

    frames = stream.getvalue().split(ERASE_LINE)
    assert frames == ["", "replaying: 0/100 (0 %), 0/s", "replaying: 25/100 (25 %), 2/s, ETA 0:30", ""]
    assert "\n" not in stream.getvalue()  # one line, redrawn in place, erased at the end


def test_without_a_total_the_line_shows_count_and_rate_only() -> None:
    stream, clock = Terminal(), Clock()
    progress = Progress(stream, "purging", clock=clock)
    clock.now += 2
    progress.update(3000)

    assert stream.getvalue() == ERASE_LINE + "purging: 3,000, 1,500/s"


def test_redraws_are_throttled_to_the_interval() -> None:
    stream, clock = Terminal(), Clock()
    with Progress(stream, "x", total=1000, clock=clock, interval=1.0) as progress:
        for _ in range(500):
            clock.now += 0.01
            progress.advance()

    assert stream.getvalue().count(ERASE_LINE) == 2 + 5  # first frame, one a second, the final erase


def test_a_stream_that_is_not_a_terminal_gets_nothing() -> None:
    stream = io.StringIO()
    with Progress(stream, "replaying", total=3) as progress:
        progress.advance(3)

    assert stream.getvalue() == ""


@pytest.fixture
def every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draw every update, so a fast command's last count is on the line (the throttle is tested above)."""
    monkeypatch.setattr(Progress, "INTERVAL", 0.0)


def _old_published_rows(count: int) -> None:
    with transaction.atomic():
        for truck in range(1, count + 1):
            outbox.publish(route_calculated(truck_id=truck))
    PendingEvent.objects.all().delete()
    old = timezone.now() - timedelta(days=30)
    OutboxEvent.objects.update(state="published", created_at=old, published_at=old)


@pytest.mark.django_db
@pytest.mark.usefixtures("every_frame")
@pytest.mark.parametrize("stderr, shown", [(Terminal(), True), (io.StringIO(), False)], ids=["terminal", "log"])
def test_purge_outbox_shows_progress_on_a_terminal_only_and_its_summary_always(stderr: io.StringIO, shown: bool) -> None:
    _old_published_rows(3)
    stdout = io.StringIO()

    call_command("purge_outbox", "--batch-size", "2", stdout=stdout, stderr=stderr)

    assert stdout.getvalue() == "purged 3 published outbox events older than 168 h\n"
    assert ("purging published outbox rows: 3," in stderr.getvalue()) is shown
    assert (stderr.getvalue() == "") is not shown
    assert "\x1b[31m" not in stderr.getvalue()  # not coloured as an error


@pytest.mark.django_db
@pytest.mark.usefixtures("every_frame")
@pytest.mark.parametrize("stderr, shown", [(Terminal(), True), (io.StringIO(), False)], ids=["terminal", "log"])
def test_purge_inbox_shows_progress_on_a_terminal_only_and_its_summary_always(stderr: io.StringIO, shown: bool) -> None:
    old = timezone.now() - timedelta(days=400)
    InboxEntry.objects.bulk_create(InboxEntry(group="g", event_id=uuid.uuid4(), processed_at=old) for _ in range(3))
    stdout = io.StringIO()

    call_command("purge_inbox", stdout=stdout, stderr=stderr)

    assert stdout.getvalue() == "deleted 3 inbox rows\n"
    assert ("purging inbox rows: 3," in stderr.getvalue()) is shown
    assert (stderr.getvalue() == "") is not shown
