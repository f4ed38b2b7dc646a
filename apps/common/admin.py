"""Admin building blocks shared by the apps that store messages (outbox rows, dead letters)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest


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
