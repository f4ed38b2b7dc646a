"""Read-only outbox admin: what was sent, what failed and why, and how far behind the relay is."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from apps.common.admin import EventIdOrKeySearchMixin
from apps.contracts import EVENT_TYPES
from apps.outbox.models import OutboxEvent
from apps.outbox.selectors import outbox_backlog


@admin.register(OutboxEvent)
class OutboxEventAdmin(EventIdOrKeySearchMixin, admin.ModelAdmin):
    list_display = [
        "id", "state", "event_type", "key", "topic", "created_at", "published_at", "attempts", "short_error",
    ]
    list_filter = ["state", "event_type", "topic"]
    search_fields = ["key"]  # plus the event id, see EventIdOrKeySearchMixin
    search_help_text = "Exact event id (ce_id) or Kafka key."
    date_hierarchy = "created_at"
    show_full_result_count = False  # no COUNT(*) over the whole outbox on every page
    fields = [
        "event_id", "state", "event_type", "source", "topic", "key", "created_at", "published_at",
        "partition", "offset", "attempts", "last_error", "traceparent", "payload",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxEvent]:
        """Each user sees the events of the bounded contexts they work in (a dispatcher: routing's, not invoice
        totals); a superuser sees all."""
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        visible = {cls.ce_source() for cls in EVENT_TYPES.values() if request.user.has_module_perms(cls.context)}
        return queryset.filter(source__in=visible)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, obj: OutboxEvent) -> str:
        return obj.last_error[:80] + ("…" if len(obj.last_error) > 80 else "")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {**(extra_context or {}), "backlog": outbox_backlog()})
