"""The dead-letter ledger in the admin: investigate, replay (now or in the background), discard, edit and replay;
and the edits of billed fields waiting for finance's approval.

Replay and discard are custom permissions (`replay_deadletter`, `discard_deadletter`, `edit_deadletter`) held by
the `operations` group; everyone else with `view_deadletter` sees the ledger read-only. Finance holds
`approve_billing_edit`: it approves or rejects an edit of billed fields someone else proposed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from apps.common.admin import EventIdOrKeySearchMixin, ReadOnlyAdminMixin, truncated
from apps.common.errors import ApplicationError
from apps.common.text import counted
from apps.consumers import selectors
from apps.consumers.catalogue import message_anchor
from apps.consumers.fixes import fix_status
from apps.consumers.models import DeadLetter, DeadLetterEdit, DeadLetterReplay, bytes_text, text_bytes
from apps.consumers.replay import (
    deadletter_discard,
    deadletter_discard_many,
    deadletter_edit_and_replay,
    deadletter_edit_approve,
    deadletter_edit_reject,
    deadletter_queue_replay,
    deadletter_replay,
)


class FailureGroupFilter(admin.SimpleListFilter):
    title = "failure group"
    parameter_name = "fingerprint"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            (group.fingerprint, f"{group.exception_class.rsplit('.', 1)[-1] or group.reason}: "
                                f"{group.sample_message[:60]} ({group.count})")
            for group in selectors.failure_groups()
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> QuerySet[DeadLetter]:
        return queryset.filter(fingerprint=self.value()) if self.value() else queryset


class HistoryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeadLetterReplay
    extra = 0
    can_delete = False
    fields = ["at", "action", "outcome", "who", "reason", "error", "payload_diff_pre"]
    readonly_fields = fields

    @admin.display(description="by")
    def who(self, entry: DeadLetterReplay) -> str:
        return entry.who() or "-"

    @admin.display(description="payload diff")
    def payload_diff_pre(self, entry: DeadLetterReplay) -> str:
        return format_html('<pre class="payload">{}</pre>', entry.payload_diff) if entry.payload_diff else "-"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The history is part of the dead letter: whoever may see the ledger sees it.
        return request.user.has_perm("consumers.view_deadletter")


class DiscardForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), help_text="Kept in the history.")


class EditPayloadForm(forms.Form):
    payload = forms.CharField(widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}))


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdminMixin, EventIdOrKeySearchMixin, admin.ModelAdmin):
    # Eight columns, so the list fits 1,280 px beside the filters: status carries what it is parked behind,
    # "attempts" carries when it last failed and when it is retried next. What failed comes first, where it was
    # read from (group, type, key) after it.
    list_display = [
        "id", "status_display", "reason", "short_error", "group", "event_type", "key_short", "attempts_display",
    ]
    list_filter = ["status", "group", "event_type", "reason", FailureGroupFilter]
    search_fields = ["key"]
    search_help_text = "An event id, or a key (exact; bytes that are not printable text as \\xNN, as shown)."
    list_select_related = ["blocked_by"]
    inlines = [HistoryInline]
    actions = ["replay_selected", "replay_failure_groups", "discard_selected"]
    # The failure first (what went wrong, its fix), then the message and where it was read from.
    fieldsets = [
        ("Failure", {"fields": ["status", "reason", "exception_class", "error_message", "handler",
                                "blocked_by", "parked_count", "attempts", "auto_retries", "next_attempt_at",
                                "first_failed_at", "last_failed_at", "resolved_at", "fingerprint"]}),
        ("Message", {"fields": ["group", "event_type", "event_version", "catalogue_link", "event_id", "key_display",
                                "scope_display", "topic", "partition", "offset"]}),
        ("Payload", {"fields": ["payload_pre", "headers_table", "traceback_pre"]}),
    ]
    readonly_fields = [
        "status", "group", "event_type", "event_version", "catalogue_link", "event_id", "key_display", "scope_display",
        "topic",
        "partition", "offset", "blocked_by", "parked_count", "reason", "handler", "exception_class", "error_message",
        "fingerprint",
        "attempts", "auto_retries", "next_attempt_at", "first_failed_at", "last_failed_at", "resolved_at",
        "traceback_pre", "payload_pre",
        "headers_table",
    ]

    # --- permissions: the ledger is written by the consumers and the services, never edited as a form ---

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consumers.replay_deadletter")

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consumers.discard_deadletter")

    def has_edit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consumers.edit_deadletter")

    # --- display ---------------------------------------------------------------------------------------------

    def key_from_search(self, term: str) -> bytes:
        return text_bytes(term)

    @admin.display(description="key")
    def key_short(self, dead_letter: DeadLetter) -> str:
        text = dead_letter.key_text()
        return "-" if text is None else truncated(text, 60)

    @admin.display(description="key")
    def key_display(self, dead_letter: DeadLetter) -> str:
        key = dead_letter.key_bytes()
        if key is None:
            return "- (no key)"
        return format_html("<code>{}</code><br>{} bytes, hex <code>{}</code>", bytes_text(key), len(key), key.hex())

    @admin.display(description="contract")
    def catalogue_link(self, dead_letter: DeadLetter) -> str:
        """The event version's schema, key and readers in the event catalogue, when the contracts know it."""
        anchor = message_anchor(dead_letter.event_type)
        if anchor is None:
            return "- (this type and version are not in the event catalogue)"
        return format_html('<a href="{}#{}">{} in the event catalogue</a>', reverse("asyncapi-ui"), anchor,
                           anchor.removeprefix("message-"))

    @admin.display(description="ordering scope")
    def scope_display(self, dead_letter: DeadLetter) -> str:
        """Whose later messages wait behind this one: its aggregate (or, for an unreadable message, its key)."""
        scope = dead_letter.scope_bytes()
        return "- (none: holds nothing back)" if scope is None else format_html("<code>{}</code>", bytes_text(scope))

    @admin.display(description="status", ordering="status")
    def status_display(self, dead_letter: DeadLetter) -> str:
        if dead_letter.blocked_by_id is None:
            return dead_letter.get_status_display()
        return format_html("{}<br>behind #{}", dead_letter.get_status_display(), dead_letter.blocked_by_id)

    @admin.display(description="attempts, last failed", ordering="last_failed_at")
    def attempts_display(self, dead_letter: DeadLetter) -> str:
        last = date_format(timezone.localtime(dead_letter.last_failed_at), "SHORT_DATETIME_FORMAT")
        if dead_letter.next_attempt_at is None:
            return format_html("{} · {}", dead_letter.attempts, last)
        upcoming = date_format(timezone.localtime(dead_letter.next_attempt_at), "SHORT_DATETIME_FORMAT")
        return format_html("{} · {}<br>next {}", dead_letter.attempts, last, upcoming)

    @admin.display(description="error")
    def short_error(self, dead_letter: DeadLetter) -> str:
        return truncated(dead_letter.error_message, 80)

    @admin.display(description="messages parked behind it")
    def parked_count(self, dead_letter: DeadLetter) -> int:
        return dead_letter.parked.filter(status__in=DeadLetter.UNRESOLVED).count()

    @admin.display(description="traceback")
    def traceback_pre(self, dead_letter: DeadLetter) -> str:
        return format_html('<pre class="payload">{}</pre>', dead_letter.traceback) if dead_letter.traceback else "-"

    @admin.display(description="payload")
    def payload_pre(self, dead_letter: DeadLetter) -> str:
        return format_html('<pre class="payload">{}</pre>', dead_letter.pretty_payload())

    @admin.display(description="headers")
    def headers_table(self, dead_letter: DeadLetter) -> str:
        rows = format_html_join(
            "", "<tr><th>{}</th><td><code>{}</code></td></tr>",
            ((name, bytes_text(value) if value is not None else "null") for name, value in dead_letter.header_pairs()),
        )
        return format_html("<table>{}</table>", rows)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "failure_groups": selectors.failure_groups(limit=10),
            "oldest_failed_at": selectors.oldest_unresolved_at(),
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        dead_letter = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}), "can_edit_payload": self.has_edit_permission(request),
            "can_replay": self.has_replay_permission(request), "can_discard": self.has_discard_permission(request),
            **(self._fix_context(request, dead_letter) if dead_letter else {}),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _fix_context(self, request: HttpRequest, dead_letter: DeadLetter) -> dict[str, Any]:
        """The fix as this user sees it (whose, done or not) and, when done, where to replay the letter."""
        if not dead_letter.fix_url:
            return {}
        fix = fix_status(label=dead_letter.fix_label or dead_letter.fix_url, url=dead_letter.fix_url,
                         user=request.user)
        replayable = dead_letter.is_unresolved and not dead_letter.blocked_by_id
        can_replay = replayable and self.has_replay_permission(request)
        return {"fix": fix, "replay_url": reverse("admin:consumers_deadletter_replay_one", args=[dead_letter.pk])
                if can_replay else ""}

    # --- actions -----------------------------------------------------------------------------------------------

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(permissions=["replay"], description="Replay selected dead letters")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        self._replay(request, list(queryset.order_by("id").values_list("id", flat=True)))

    @admin.action(permissions=["replay"], description="Replay all in this failure group")
    def replay_failure_groups(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> HttpResponse | None:
        fingerprints = sorted(set(queryset.values_list("fingerprint", flat=True)))
        replayable = selectors.replayable(fingerprints=fingerprints)
        if request.POST.get("confirm") != "yes":
            per_group = Counter(replayable.values_list("fingerprint", flat=True))
            return TemplateResponse(request, "admin/consumers/deadletter/confirm_replay_groups.html", {
                **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Replay failure groups",
                "selected": queryset, "fingerprints": fingerprints, "count": replayable.count(),
                "groups": [(group, per_group[group.fingerprint])
                           for group in selectors.failure_groups(fingerprints=fingerprints, limit=len(fingerprints))],
                "action": "replay_failure_groups", "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            })
        self._replay(request, list(replayable.values_list("id", flat=True)))
        return None

    @admin.action(permissions=["discard"], description="Discard selected (with a reason)")
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> HttpResponse | None:
        form = DiscardForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if not form.is_valid():
            return TemplateResponse(request, "admin/consumers/deadletter/discard.html", {
                **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Discard dead letters",
                "selected": queryset, "form": form, "action": "discard_selected",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            })
        summary = deadletter_discard_many(
            dead_letter_ids=list(queryset.values_list("id", flat=True)), actor=request.user,
            reason=form.cleaned_data["reason"],
        )
        self.message_user(
            request,
            f"Discarded {counted(len(summary.discarded), 'dead letter')}; "
            f"{counted(len(summary.released), 'parked message')} released.",
        )
        if summary.refused:
            refused = "; ".join(f"#{i}: {error}" for i, error in summary.refused.items())
            self.message_user(request, "Not discarded: " + refused, messages.WARNING)
        return None

    def _replay(self, request: HttpRequest, ids: list[int]) -> None:
        if len(ids) > settings.CONSUMER_REPLAY_SYNC_LIMIT:
            queued = deadletter_queue_replay(dead_letter_ids=ids, actor=request.user)
            skipped = len(ids) - len(queued)
            self.message_user(
                request,
                f"Queued {counted(len(queued), 'dead letter')} for background replay"
                + (f" ({skipped} skipped: resolved, parked behind another, or at the replay cap)." if skipped else ".")
                + " Their status is 'replaying' until the replay ran.",
            )
            return
        outcomes: Counter[str] = Counter()
        problems: list[str] = []
        released = 0
        for dead_letter_id in ids:
            try:
                result = deadletter_replay(dead_letter_id=dead_letter_id, actor=request.user)
            except ApplicationError as error:
                outcomes["refused"] += 1
                problems.append(f"#{dead_letter_id}: {error.message}")
                continue
            outcomes[result.outcome] += 1
            released += len(result.released)
            if result.error:
                problems.append(f"#{dead_letter_id} failed again: {result.error[:200]}")
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
        level = messages.SUCCESS if not problems else messages.WARNING
        self.message_user(
            request,
            f"Replayed {counted(len(ids), 'dead letter')}: {summary}; {counted(released, 'parked message')} released.",
            level,
        )
        for problem in problems[:20]:
            self.message_user(request, problem, messages.WARNING)

    # --- edit payload then replay ----------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        return [
            path("<id:object_id>/edit-and-replay/", self.admin_site.admin_view(self.edit_and_replay_view),
                 name="consumers_deadletter_edit_and_replay"),
            path("<id:object_id>/replay/", self.admin_site.admin_view(self.replay_one_view),
                 name="consumers_deadletter_replay_one"),
            path("<id:object_id>/discard/", self.admin_site.admin_view(self.discard_one_view),
                 name="consumers_deadletter_discard_one"),
            *super().get_urls(),
        ]

    # --- the buttons on a dead letter's own page: confirm (failure, how many rows), then call the service -----

    def replay_one_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_replay_permission(request):
            raise PermissionDenied
        dead_letter = get_object_or_404(DeadLetter, pk=object_id)
        if request.method == "POST":
            self._replay(request, [dead_letter.pk])
            return HttpResponseRedirect(reverse("admin:consumers_deadletter_change", args=[dead_letter.pk]))
        return self._confirm_one(request, dead_letter, verb="Replay", form=None)

    def discard_one_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_discard_permission(request):
            raise PermissionDenied
        dead_letter = get_object_or_404(DeadLetter, pk=object_id)
        form = DiscardForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                result = deadletter_discard(
                    dead_letter_id=dead_letter.pk, actor=request.user, reason=form.cleaned_data["reason"]
                )
            except ApplicationError as error:
                form.add_error("reason" if error.field == "reason" else None, error.message)
            else:
                self.message_user(
                    request,
                    f"Discarded #{dead_letter.pk}; {counted(len(result.released), 'parked message')} released.",
                )
                return HttpResponseRedirect(reverse("admin:consumers_deadletter_change", args=[dead_letter.pk]))
        return self._confirm_one(request, dead_letter, verb="Discard", form=form)

    def _confirm_one(
        self, request: HttpRequest, dead_letter: DeadLetter, *, verb: str, form: forms.Form | None
    ) -> TemplateResponse:
        return TemplateResponse(request, "admin/consumers/deadletter/confirm_one.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": dead_letter,
            **self._fix_context(request, dead_letter), "replay_url": "",
            "title": f"{verb} dead letter #{dead_letter.pk}?", "verb": verb, "form": form,
            "parked": dead_letter.parked.filter(status__in=DeadLetter.UNRESOLVED).count(),
        })

    def edit_and_replay_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_edit_permission(request):
            raise PermissionDenied
        dead_letter = get_object_or_404(DeadLetter, pk=object_id)
        form = EditPayloadForm(request.POST or None, initial={"payload": dead_letter.pretty_payload()})
        if request.method == "POST" and form.is_valid():
            try:
                result = deadletter_edit_and_replay(
                    dead_letter_id=dead_letter.pk, actor=request.user, payload=form.cleaned_data["payload"]
                )
            except ApplicationError as error:
                form.add_error("payload", error.message)
            else:
                if result.outcome == DeadLetterReplay.Outcome.AWAITING_APPROVAL:
                    edit = DeadLetterEdit.objects.get(pk=result.edit_id)
                    message = (f"Edit #{edit.pk} changes billed fields ({', '.join(edit.guarded_fields)}): it is "
                               "awaiting approval by someone else with finance's permission; nothing was replayed.")
                    self.message_user(request, message, messages.WARNING)
                    return HttpResponseRedirect(reverse("admin:consumers_deadletter_change", args=[dead_letter.pk]))
                level = messages.SUCCESS if result.outcome != DeadLetterReplay.Outcome.FAILED else messages.WARNING
                message = f"Edited and replayed #{dead_letter.pk}: {result.outcome} {result.error}"
                self.message_user(request, message, level)
                return HttpResponseRedirect(reverse("admin:consumers_deadletter_change", args=[dead_letter.pk]))
        return TemplateResponse(request, "admin/consumers/deadletter/edit_and_replay.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": dead_letter,
            **self._fix_context(request, dead_letter), "replay_url": "",
            "title": f"Edit payload of dead letter #{dead_letter.pk} then replay", "form": form,
        })


class RejectEditForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), help_text="Kept on the edit.")


@admin.register(DeadLetterEdit)
class DeadLetterEditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Edits of dead letters: the ones awaiting approval are finance's to approve (applied and replayed at once)
    or reject; an edit is never changed here."""

    list_display = ["id", "dead_letter", "status", "guarded", "proposed_by", "proposed_at", "approved_by",
                    "approved_at"]
    list_filter = ["status"]
    list_select_related = ["dead_letter", "proposed_by", "approved_by"]
    actions = ["approve_selected", "reject_selected"]
    fields = ["dead_letter", "status", "guarded", "diff_pre", "proposed_by", "proposed_at", "approved_by",
              "approved_at", "rejected_by", "rejected_at", "reason"]
    readonly_fields = fields

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consumers.approve_billing_edit")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="billed fields changed")
    def guarded(self, edit: DeadLetterEdit) -> str:
        return ", ".join(edit.guarded_fields) or "- (none: applied without approval)"

    @admin.display(description="payload diff")
    def diff_pre(self, edit: DeadLetterEdit) -> str:
        return format_html('<pre class="payload">{}</pre>', edit.payload_diff)

    @admin.action(permissions=["approve"], description="Approve selected edits (applied and replayed)")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetterEdit]) -> None:
        for edit_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                result = deadletter_edit_approve(edit_id=edit_id, actor=request.user)
            except ApplicationError as error:
                self.message_user(request, f"Edit #{edit_id} not approved: {error.message}", messages.WARNING)
                continue
            level = messages.SUCCESS if result.outcome != DeadLetterReplay.Outcome.FAILED else messages.WARNING
            self.message_user(request, f"Edit #{edit_id} approved and replayed: {result.outcome} {result.error}", level)

    @admin.action(permissions=["approve"], description="Reject selected edits (with a reason)")
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetterEdit]) -> HttpResponse | None:
        form = RejectEditForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if not form.is_valid():
            return TemplateResponse(request, "admin/consumers/deadletteredit/reject.html", {
                **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Reject edits",
                "selected": queryset, "form": form, "action": "reject_selected",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            })
        for edit_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                deadletter_edit_reject(edit_id=edit_id, actor=request.user, reason=form.cleaned_data["reason"])
            except ApplicationError as error:
                self.message_user(request, f"Edit #{edit_id} not rejected: {error.message}", messages.WARNING)
            else:
                self.message_user(request, f"Edit #{edit_id} rejected.")
        return None
