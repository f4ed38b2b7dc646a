"""Admin building blocks shared by the apps that store messages (outbox rows, dead letters) or rows only services
write."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString


class ReadOnlyAdminMixin:
    """Rows only services write (events, dead letters, invoices, their lines): the admin shows them and never
    adds, edits or deletes one. Actions that change them call a service."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventIdOrKeySearchMixin:
    """Search by exact event id (a UUID) or exact Kafka key: both are indexed, a LIKE over the table is not.

    `key_from_search` turns the term into the stored key (the text itself; bytes where keys are stored as bytes).
    """

    def key_from_search(self, term: str) -> Any:
        return term

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(event_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(key=self.key_from_search(term)), False


def pretty_json(value: Any) -> SafeString:
    """JSON (a decoded value, or text that may or may not be JSON) indented in a scrolling <pre>; text that is not
    JSON is shown as it is."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return format_html('<pre class="payload">{}</pre>', value)
    return format_html('<pre class="payload">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False))


def truncated(text: str, length: int) -> str:
    """`text` cut to `length` characters for a list column, the whole of it in the title (shown on hover)."""
    if len(text) <= length:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: length - 1])

