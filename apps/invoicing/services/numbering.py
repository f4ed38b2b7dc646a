"""Invoice numbers: `LF-YYYY-NNNNNN`, one gapless sequence per year shared by invoices and credit notes, handed out
under the year's counter row lock, which every issuing path takes first and keeps to its commit."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone

from apps.invoicing.models import InvoiceNumberCounter


def lock_year() -> int:
    """Lock this year's number counter (created if missing) and return the year. Every issuing path calls this
    first: numbers are gapless, so issuing is serialised per year by this row anyway, and holding it before
    the "does the route have an invoice?" check also serialises two calculations of one route that arrive on
    different partitions (the key is the truck), each seeing the other's result. One row lock, whatever the
    batch size: a lock per route took 500 of PostgreSQL's shared lock table entries per consumer batch."""
    year = timezone.now().year
    _lock_counter(year)
    return year


def _lock_counter(year: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_COUNTER, [year])
        if cursor.fetchone() is None:  # the year's first invoice; a concurrent first one is absorbed by the conflict
            InvoiceNumberCounter.objects.bulk_create([InvoiceNumberCounter(year=year)], ignore_conflicts=True)
            cursor.execute(_LOCK_COUNTER, [year])


def allocate_numbers(year: int, count: int) -> tuple[list[str], datetime]:
    """The next `count` gapless numbers and their issue time, under `year`'s counter lock (`lock_year`),
    which the issuing transaction keeps to its end: numbers are unique, a rollback takes them back, and the
    time is read only once the lock is ours, so a higher number never carries an earlier time."""
    last, issued_at = _add_to_counter(year, count)
    if issued_at.year != year:
        # The year turned while we waited for its counter. We still hold the row, so these are its last
        # numbers: give them back and number in the year of the issue time.
        _add_to_counter(year, -count)
        year = issued_at.year
        _lock_counter(year)
        last, issued_at = _add_to_counter(year, count)
    return [_number(year, sequence) for sequence in range(last - count + 1, last + 1)], issued_at


def _add_to_counter(year: int, count: int) -> tuple[int, datetime]:
    """The counter's new last number and the database's clock, read after the update (so after the lock)."""
    with connection.cursor() as cursor:
        cursor.execute(_ADD_TO_COUNTER, [count, year])
        return cursor.fetchone()


def _number(year: int, sequence: int) -> str:
    """`LF-YYYY-NNNNNN`: six digits at least, a seventh from the millionth invoice of a year (sort with
    `models.NUMBER_ORDER`). Numbers already issued keep their form."""
    return f"LF-{year:04d}-{sequence:06d}"


_COUNTER_TABLE = InvoiceNumberCounter._meta.db_table
_LOCK_COUNTER = f"SELECT last_number FROM {_COUNTER_TABLE} WHERE year = %s FOR UPDATE"
_ADD_TO_COUNTER = (
    f"UPDATE {_COUNTER_TABLE} SET last_number = last_number + %s WHERE year = %s "
    "RETURNING last_number, clock_timestamp()"
)
