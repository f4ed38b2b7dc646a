"""Logging helpers referenced by the LOGGING setting: structured JSON lines (LOG_FORMAT=json), the access-log
filter and the redaction of error text (`RedactErrors`). Loaded before the app registry is ready: import nothing
that needs models.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from apps.common.redaction import redact, redact_traceback
from apps.common.tracing import current_event_id, current_log_ids, current_traceparent


class SkipErrorResponses(logging.Filter):
    """For runserver's access log (`django.server`): drop 4xx/5xx lines, which `django.request` already logs
    once with the status and path (and the traceback for a 5xx), so each failed request is one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", 0) < 400


class RedactErrors(logging.Filter):
    """On the handler, for every logger (Django's 500s, Celery's failed tasks, ours): an exception passed as an
    argument and a record's traceback lose the values their messages quote (apps.common.redaction), so a
    customer's name in an error reaches the dead-letter row, not the log. Celery's failure line passes the
    exception as the text `exc`."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(arg, BaseException) for arg in args):
            record.args = tuple(redact(str(arg)) if isinstance(arg, BaseException) else arg for arg in args)
        elif isinstance(args, Mapping) and isinstance(exc := args.get("exc"), str):
            record.args = {**args, "exc": redact(exc)}
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_traceback(self._formatter.formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, process; trace_id and span_id from the current `traceparent`, event_id
    inside a consumer's handler, route_id / invoice_id where the work names them; the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        traceparent = current_traceparent()
        if traceparent:
            _version, trace_id, span_id, _flags = traceparent.split("-")
            entry.update(trace_id=trace_id, span_id=span_id)
        event_id = current_event_id()
        if event_id:
            entry["event_id"] = event_id
        entry.update(current_log_ids())
        if record.exc_info:
            entry["exception"] = record.exc_text or redact_traceback(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _utc_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
