"""Admin building blocks shared by the apps that store messages (outbox rows, dead letters)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.http import HttpRequest


class EventIdOrKeySearchMixin:
    """Search by exact event id (a UUID) or exact Kafka key: both are indexed, a LIKE over the table is not."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(event_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(key=term), False
