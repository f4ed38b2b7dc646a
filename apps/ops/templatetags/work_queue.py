"""The admin index's "needs you" panel: per role, the counts of work waiting, only from what the user may see."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from apps.common.text import counted
from apps.consumers import selectors as ledger
from apps.invoicing import selectors as invoicing
from apps.outbox.admin import visible_sources
from apps.outbox.selectors import outbox_backlog

register = template.Library()


@register.inclusion_tag("admin/work_queue.html", takes_context=True)
def work_queue(context: dict[str, Any]) -> dict[str, Any]:
    user = context["request"].user
    items: list[dict[str, Any]] = []
    if user.has_perm("consumers.view_deadletter"):
        changelist = reverse("admin:consumers_deadletter_changelist")
        for group, count in ledger.unresolved_count_by_group():
            items.append({"text": f"{counted(count, 'unresolved dead letter')} in group {group}",
                          "url": f"{changelist}?group__exact={group}", "warn": True})
        if not items:
            items.append({"text": "No unresolved dead letters", "url": changelist, "warn": False})
    if user.has_perm("outbox.view_outboxevent"):
        backlog = outbox_backlog(sources=visible_sources(user))
        text = (f"{counted(backlog.unpublished, 'unpublished event')}, "
                f"the oldest {backlog.oldest_age} old" if backlog.unpublished else "Every event is published")
        items.append({"text": text, "url": reverse("admin:outbox_outboxevent_changelist") + "?state__exact=pending",
                      "warn": bool(backlog.unpublished)})
    if user.has_perm("invoicing.view_invoice"):
        failed = invoicing.invoice_pdf_failed_count()
        items.append({
            "text": (f"{counted(failed, 'invoice')} with a failed PDF" if failed
                     else "No failed invoice PDFs"),
            "url": reverse("admin:invoicing_invoice_changelist") + "?pdf_status__exact=failed", "warn": bool(failed),
        })
    return {"items": items}
