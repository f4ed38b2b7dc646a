"""Whose time zone a page shows times in: the reader's own (the zone their browser reports, kept in a cookie by
`common/timezone.js`), else the site's (DJANGO_TIME_ZONE); and the one way pages print a time, its zone named."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString

COOKIE = "logiflow_tz"


def zone_named(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA zone `name` (Europe/Istanbul), or None for anything else: the cookie is the browser's to write."""
    if not name or len(name) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None


class ReaderTimeZoneMiddleware:
    """Pages in the reader's time zone (the cookie), else the site's. The API keeps the site's: its inputs and
    outputs carry their own offset, and its `date` filters count days in the site's zone whoever asks."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = None if request.path.startswith("/api/") else zone_named(request.COOKIES.get(COOKIE, ""))
        if zone is None:
            timezone.deactivate()
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)


def reader_zone_name() -> str:
    """The zone this request's pages show times in (the reader's, else the site's)."""
    return timezone.get_current_timezone_name()


def site_zone_name() -> str:
    return str(settings.TIME_ZONE)


def local_time(moment: datetime | None) -> str:
    """`moment` in the current time zone, named: 2026-11-30 07:00 CET; "—" for none."""
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment else "—"


def list_time(moment: datetime | None) -> SafeString | str:
    """`moment` for a list's narrow column: the date, then the time with its zone, each kept whole (two lines at
    most); the exact moment in the `datetime` attribute."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return format_html(
        '<time class="list-time" datetime="{}"><span>{}</span> <span>{}</span></time>',
        moment.isoformat(), date_format(local, "DATE_FORMAT"), date_format(local, "TIME_FORMAT"),
    )
