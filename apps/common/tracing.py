"""W3C trace context (`traceparent`) carried from an HTTP request or a consumed event into the events it causes."""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.http import HttpRequest, HttpResponse

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)
# The id of the event being handled, for the logs (apps.common.logs); None outside a handler.
_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)


def new_traceparent(parent: str | None = None) -> str:
    """A child span of `parent` when it is a valid traceparent, else the root of a new trace."""
    match = _TRACEPARENT.match(parent or "")
    trace_id, flags = (match.group(1), match.group(3)) if match else (secrets.token_hex(16), "01")
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def current_traceparent() -> str | None:
    return _current.get()


def current_event_id() -> str | None:
    return _event_id.get()


@contextmanager
def trace_context(parent: str | None, *, event_id: str | None = None) -> Iterator[str]:
    """Run a unit of work as a new span under `parent` (or a new trace); `event_id` names the event it handles."""
    token = _current.set(new_traceparent(parent))
    event_token = _event_id.set(event_id) if event_id is not None else None
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        if event_token is not None:
            _event_id.reset(event_token)
        _current.reset(token)


class TraceparentMiddleware:
    """Every request runs inside a span, so the events it publishes carry a `traceparent`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with trace_context(request.headers.get("traceparent")) as traceparent:
            response = self.get_response(request)
            response["traceparent"] = traceparent
            return response
