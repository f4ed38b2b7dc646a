"""Logging filters referenced by the LOGGING setting (keep this module free of Django imports: it loads early)."""

from __future__ import annotations

import logging


class SkipErrorResponses(logging.Filter):
    """For runserver's access log (`django.server`): drop 4xx/5xx lines, which `django.request` already logs
    once with the status and path (and the traceback for a 5xx), so each failed request is one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", 0) < 400
