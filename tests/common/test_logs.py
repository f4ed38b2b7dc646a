"""LOG_FORMAT=json: one object per line, with the trace and the event being handled."""

from __future__ import annotations

import json
import logging
import sys

from apps.common.logs import JsonFormatter
from apps.common.tracing import trace_context

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _record(message: str, *, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("apps.test", logging.WARNING, __file__, 1, message, None, exc_info)  # type: ignore[arg-type]


def test_a_line_inside_a_handler_carries_the_trace_and_the_event_id() -> None:
    with trace_context(PARENT, event_id="4b1c9c1e-0000-4000-8000-000000000001") as traceparent:
        line = JsonFormatter().format(_record('route "7" \u00e9'))

    entry = json.loads(line)
    assert entry["message"] == 'route "7" \u00e9'
    assert (entry["level"], entry["logger"]) == ("WARNING", "apps.test")
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == traceparent.split("-")[2]
    assert entry["event_id"] == "4b1c9c1e-0000-4000-8000-000000000001"
    assert entry["time"].endswith("Z")


def test_a_line_outside_any_trace_has_no_trace_fields_and_keeps_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = JsonFormatter().format(_record("failed", exc_info=sys.exc_info()))

    entry = json.loads(line)
    assert "trace_id" not in entry and "event_id" not in entry
    assert "ValueError: boom" in entry["exception"]
