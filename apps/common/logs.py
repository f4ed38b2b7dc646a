"""Structured logs (LOG_FORMAT=json): one JSON object per line, with the trace and the event being handled.

Loaded by LOGGING before the app registry is ready: it must import nothing that needs models.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from apps.common.tracing import current_event_id, current_traceparent


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, process; trace_id and span_id from the current `traceparent`, event_id
    inside a consumer's handler; the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
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
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
