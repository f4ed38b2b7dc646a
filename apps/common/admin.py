"""Admin building blocks shared by the apps that store messages (outbox rows, dead letters), and the workers'
heartbeats."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.common.models import Heartbeat
from apps.common.selectors import heartbeat_is_stale


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


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    """Which relays and consumers are alive: read-only, written by the workers themselves."""

    list_display = ["__str__", "alive", "beat_at", "last_batch_at", "started_at", "assigned"]
    list_filter = ["kind", "group"]
    readonly_fields = [f.name for f in Heartbeat._meta.fields]

    @admin.display(boolean=True, description="alive")
    def alive(self, beat: Heartbeat) -> bool:
        return not heartbeat_is_stale(beat)

    @admin.display(description="partitions (lag)")
    def assigned(self, beat: Heartbeat) -> str:
        return ", ".join(f"{p['topic']}[{p['partition']}] {p['lag']}" for p in beat.partitions) or "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
