"""Outbox admin: what was sent, what failed and why (failed rows first), how far behind the relay is, what it
cannot get past; failed rows can be re-sent by whoever holds `outbox.resend_outboxevent`."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Case, QuerySet, Value, When
from django.db.models.expressions import OrderBy
from django.http import HttpRequest, HttpResponse

from apps.common.admin import EventIdOrKeySearchMixin, ReadOnlyAdminMixin, pretty_json, truncated
from apps.contracts import EVENT_TYPES
from apps.outbox.models import OutboxEvent, RelayProblem
from apps.outbox.selectors import outbox_backlog, relay_problems
from apps.outbox.services import outbox_events_resend


def visible_sources(user: Any) -> set[str] | None:
    """The event sources (bounded contexts) whose outbox rows `user` may see; None: all.

    All for a superuser, and for whoever may re-send (operations: delivery failures of every context are theirs,
    as the dead letters of every context are); else the contexts the user works in (a dispatcher: routing's).
    """
    if user.is_superuser or user.has_perm("outbox.resend_outboxevent"):
        return None
    return {cls.ce_source() for cls in EVENT_TYPES.values() if user.has_module_perms(cls.context)}


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdminMixin, EventIdOrKeySearchMixin, admin.ModelAdmin):
    list_display = [
        "id", "state", "event_type", "key", "topic", "created_at", "published_at", "attempts", "short_error",
    ]
    list_filter = ["state", "event_type", "topic"]
    search_fields = ["key"]  # plus the event id, see EventIdOrKeySearchMixin
    search_help_text = "Exact event id (ce_id) or Kafka key (e.g. truck:12, customer:12, route:12)."
    date_hierarchy = "created_at"
    show_full_result_count = False  # no COUNT(*) over the whole outbox on every page
    actions = ["resend_selected"]
    fields = [
        "event_id", "state", "event_type", "source", "topic", "key", "created_at", "published_at",
        "partition", "offset", "attempts", "last_error", "resent_at", "resent_by", "traceparent", "payload_pretty",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxEvent]:
        """Each user sees the events of the bounded contexts they work in (see `visible_sources`)."""
        queryset = super().get_queryset(request)
        visible = visible_sources(request.user)
        return queryset if visible is None else queryset.filter(source__in=visible)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.resend_outboxevent")

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # Failed rows first (they wait for a person), then the newest. No index covers `state` (the relay's
        # marks must stay HOT updates), so this sorts the filtered rows; the paginator counts them anyway.
        failed_first = Case(When(state=OutboxEvent.State.FAILED, then=Value(0)), default=Value(1))
        return [OrderBy(failed_first), "-id"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboxEvent) -> str:
        return pretty_json(obj.payload)

    @admin.display(description="last error")
    def short_error(self, obj: OutboxEvent) -> str:
        return truncated(obj.last_error, 80)

    @admin.action(permissions=["resend"], description="Re-send selected failed events")
    def resend_selected(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        selected = list(queryset.order_by("id").values_list("id", flat=True))
        resent = outbox_events_resend(event_ids=selected, actor=request.user.get_username())
        for row in OutboxEvent.objects.filter(pk__in=resent):
            self.log_change(request, row, "Re-sent (failed → pending)")
        self.message_user(request, f"Re-sent {len(resent)} failed events; the relay sends them in id order.")
        if len(resent) < len(selected):
            self.message_user(
                request, f"{len(selected) - len(resent)} selected events were not failed and were left alone.",
                messages.WARNING,
            )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {
            **(extra_context or {}),
            "backlog": outbox_backlog(sources=visible_sources(request.user)),
            "relay_problems": relay_problems(),
        }
        return super().changelist_view(request, context)


@admin.register(RelayProblem)
class RelayProblemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: written and cleared by the relay."""

    list_display = ["topic", "code", "rows", "first_seen_at", "last_seen_at", "message"]
