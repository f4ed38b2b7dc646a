"""The workers' heartbeats in the admin, and the event-flow dashboard beside them (`admin:common_flow_dashboard`):
Heartbeat is the common app's model, so its admin pages keep their /admin/common/heartbeat/ addresses."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse

from apps.common.models import Heartbeat
from apps.common.selectors import heartbeat_is_stale, heartbeats_with_age, stale_components
from apps.consumers import selectors as deadletter_selectors
from apps.ops.charts import line_chart, lines_chart
from apps.ops.selectors import consumer_lag, flow_samples, lag_by_group
from apps.outbox.selectors import outbox_backlog


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    """Which relays and consumers are alive: read-only, written by the workers themselves."""

    change_list_template = "admin/common/heartbeat/change_list.html"
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

    def get_urls(self) -> list:
        dashboard = path("flow/", self.admin_site.admin_view(self.flow_dashboard), name="common_flow_dashboard")
        return [dashboard, *super().get_urls()]

    def flow_dashboard(self, request: HttpRequest) -> TemplateResponse:
        """Is everything flowing? Workers, backlog, lag (read from the broker, so a stopped consumer's grows),
        dead letters by failure group, the last 24 h."""
        if not request.user.has_perm("common.view_flow_dashboard"):
            raise PermissionDenied
        samples = flow_samples(hours=24)
        beats = [(beat, heartbeat_is_stale(beat), seconds) for beat, seconds in heartbeats_with_age()]
        changelist = reverse("admin:consumers_deadletter_changelist")
        failure_groups = [
            (group, f"{changelist}?{urlencode({'fingerprint': group.fingerprint})}")
            for group in deadletter_selectors.failure_groups()
        ]
        charts = [
            line_chart([(s.at, s.published * 60 / s.window_seconds if s.published is not None else None)
                        for s in samples], title="Events published per minute"),
            line_chart([(s.at, s.latency_p95_s) for s in samples], title="End-to-end latency, p95", unit=" s"),
            lines_chart(lag_by_group(samples), title="Consumer lag by group", unit=" msgs"),
            line_chart([(s.at, float(s.backlog)) for s in samples], title="Outbox backlog", unit=" rows"),
            line_chart([(s.at, s.oldest_pending_age_s) for s in samples], title="Oldest outbox row waiting",
                       unit=" s"),
            line_chart([(s.at, float(s.dead_letters)) for s in samples], title="Unresolved dead letters"),
        ]
        lag = consumer_lag()
        backlog = outbox_backlog()
        context = {
            **self.admin_site.each_context(request), "title": "Event flow", "opts": self.model._meta,
            "heartbeats": beats, "stale": stale_components(), "backlog": backlog,
            "oldest_pending_s": backlog.oldest_age.total_seconds() if backlog.oldest_age else 0.0,
            "lag": lag, "stalled": [group for group in lag if group.stalled],
            "lag_sampled_at": max((group.sampled_at for group in lag), default=None),
            "failure_groups": failure_groups, "unresolved": deadletter_selectors.unresolved().count(),
            "charts": charts, "samples": len(samples), "refresh_seconds": settings.FLOW_DASHBOARD_REFRESH_S,
        }
        if request.GET.get("sections"):  # the page's own refresh (ops/flow_dashboard.js): the sections alone
            return TemplateResponse(request, "admin/common/flow_dashboard_sections.html", context)
        return TemplateResponse(request, "admin/common/flow_dashboard.html", context)
