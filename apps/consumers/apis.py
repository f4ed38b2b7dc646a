"""REST API of the dead-letter ledger: list, detail, replay, discard, edit and replay (an edit of billed fields
waits for finance's approval) — with the same permissions as the admin."""

from __future__ import annotations

import base64
import json
from typing import Any

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.filters import BIGINT_MAX, StrictFilterSet
from apps.common.permissions import ModelPermissions
from apps.common.serializers import StrictInput
from apps.consumers.models import DeadLetter, DeadLetterEdit, DeadLetterReplay, bytes_text, text_bytes
from apps.consumers.replay import (
    ReplayResult,
    deadletter_discard,
    deadletter_discard_many,
    deadletter_edit_and_replay,
    deadletter_edit_approve,
    deadletter_edit_reject,
    deadletter_replay,
)
from apps.consumers.selectors import payload_json


class CanReplay(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.user.has_perm("consumers.replay_deadletter")


class CanDiscard(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.user.has_perm("consumers.discard_deadletter")


class CanEdit(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.user.has_perm("consumers.edit_deadletter")


class CanApproveEdit(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.user.has_perm("consumers.approve_billing_edit")


class DeadLetterFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=DeadLetter.Status.choices)
    group = django_filters.CharFilter()
    type = django_filters.CharFilter(field_name="event_type")
    fingerprint = django_filters.CharFilter()
    reason = django_filters.ChoiceFilter(choices=DeadLetter.Reason.choices)
    key = django_filters.CharFilter(
        method="filter_key", help_text="Exact key: its text, with bytes that are not printable text as \\xNN."
    )
    event_id = django_filters.UUIDFilter()

    class Meta:
        model = DeadLetter
        fields: list[str] = []

    def filter_key(self, queryset: Any, name: str, value: str) -> Any:
        return queryset.filter(key=text_bytes(value))


@extend_schema_field(OpenApiTypes.STR)
class KeyTextField(serializers.Field):
    """The key's bytes for people: printable UTF-8 as is, other bytes as \\xNN (null when there is no key)."""

    def to_representation(self, value: Any) -> str:
        return bytes_text(bytes(value))


@extend_schema_field(OpenApiTypes.STR)
class HexField(serializers.Field):
    def to_representation(self, value: Any) -> str:
        return bytes(value).hex()


class DeadLetterSummarySerializer(serializers.ModelSerializer):
    key = KeyTextField(read_only=True, allow_null=True)
    key_hex = HexField(source="key", read_only=True, allow_null=True, help_text="The key's exact bytes, in hex.")

    class Meta:
        model = DeadLetter
        fields = [
            "id", "status", "group", "topic", "partition", "offset", "key", "key_hex", "event_id", "event_type",
            "event_version", "reason", "handler", "exception_class", "error_message", "fix_label", "fix_url",
            "fingerprint", "attempts", "auto_retries", "next_attempt_at", "first_failed_at", "last_failed_at",
            "resolved_at", "blocked_by",
        ]


class HistorySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField(help_text="The user, or who acted outside the site (the replay command).")

    class Meta:
        model = DeadLetterReplay
        fields = ["at", "action", "outcome", "actor", "error", "reason", "payload_diff"]

    def get_actor(self, entry: DeadLetterReplay) -> str | None:
        return entry.who()


class DeadLetterDetailSerializer(DeadLetterSummarySerializer):
    payload = serializers.SerializerMethodField(help_text="The value as JSON, or null when it is not JSON.")
    value_text = serializers.CharField(help_text="The value as text (undecodable bytes replaced).")
    headers = serializers.SerializerMethodField(
        help_text="All headers in order: name, value for people (\\xNN escapes), value_base64 (the exact bytes)."
    )
    history = HistorySerializer(many=True)

    class Meta(DeadLetterSummarySerializer.Meta):
        fields = [*DeadLetterSummarySerializer.Meta.fields, "payload", "value_text", "headers", "traceback", "history"]

    def get_payload(self, dead_letter: DeadLetter) -> Any:
        return payload_json(dead_letter)

    @extend_schema_field(inline_serializer("DeadLetterHeader", many=True, fields={
        "key": serializers.CharField(), "value": serializers.CharField(allow_null=True),
        "value_base64": serializers.CharField(allow_null=True),
    }))
    def get_headers(self, dead_letter: DeadLetter) -> list[dict[str, str | None]]:
        return [
            {"key": name, "value": bytes_text(value) if value is not None else None,
             "value_base64": base64.b64encode(value).decode() if value is not None else None}
            for name, value in dead_letter.header_pairs()
        ]


class DeadLetterListApi(ListAPIView):
    permission_classes = [IsAuthenticated, ModelPermissions]
    queryset = DeadLetter.objects.order_by("-id")
    serializer_class = DeadLetterSummarySerializer
    filterset_class = DeadLetterFilter


class DeadLetterDetailApi(RetrieveAPIView):
    permission_classes = [IsAuthenticated, ModelPermissions]
    queryset = DeadLetter.objects.prefetch_related("history__actor")
    serializer_class = DeadLetterDetailSerializer


class ResultSerializer(serializers.Serializer):
    outcome = serializers.CharField()
    error = serializers.CharField(allow_blank=True)
    released = serializers.ListField(child=serializers.IntegerField(), help_text="Parked dead letters now applied.")
    new_head = serializers.IntegerField(
        allow_null=True, help_text="A released message that failed and now blocks its aggregate (scope)."
    )
    dead_letter_id = serializers.IntegerField()
    edit_id = serializers.IntegerField(
        allow_null=True, help_text="The edit proposed or applied (edit and replay, approve), else null."
    )
    status = serializers.CharField(help_text="The dead letter's status after the action.")
    dead_letter = DeadLetterDetailSerializer(
        allow_null=True, help_text="The whole dead letter, for users who may view dead letters; null otherwise."
    )


def _result(result: ReplayResult, request: Request) -> Response:
    """The outcome; payload, headers and traceback only for a user who may view dead letters."""
    dead_letter = result.dead_letter
    dead_letter.refresh_from_db()
    data = {
        "outcome": result.outcome, "error": result.error, "released": result.released, "new_head": result.new_head,
        "dead_letter_id": dead_letter.pk, "edit_id": result.edit_id, "status": dead_letter.status,
        "dead_letter": dead_letter if request.user.has_perm("consumers.view_deadletter") else None,
    }
    return Response(ResultSerializer(data).data, status=status.HTTP_200_OK)


class DeadLetterReplayApi(APIView):
    """Replay now. A replay that ran and failed again answers 200 with outcome `failed`; a refused one 400."""

    permission_classes = [IsAuthenticated, CanReplay]
    throttle_scope = "replay"

    @extend_schema(request=None, responses=ResultSerializer)
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(DeadLetter, pk=pk)
        return _result(deadletter_replay(dead_letter_id=pk, actor=request.user), request)


class DeadLetterDiscardApi(APIView):
    permission_classes = [IsAuthenticated, CanDiscard]

    class InputSerializer(StrictInput, serializers.Serializer):
        reason = serializers.CharField(max_length=2000)

    @extend_schema(request=InputSerializer, responses=ResultSerializer)
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(DeadLetter, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return _result(deadletter_discard(dead_letter_id=pk, actor=request.user, **serializer.validated_data), request)


class DeadLetterDiscardManyApi(APIView):
    """Discard a selection with one reason. None of it is applied: parked messages in the selection are
    discarded before their head, whose release runs only the parked messages left out."""

    permission_classes = [IsAuthenticated, CanDiscard]

    class InputSerializer(StrictInput, serializers.Serializer):
        ids = serializers.ListField(
            child=serializers.IntegerField(min_value=1, max_value=BIGINT_MAX), allow_empty=False, max_length=1000
        )
        reason = serializers.CharField(max_length=2000)

        class Meta:
            ref_name = "DeadLetterDiscardManyInput"

    class OutputSerializer(serializers.Serializer):
        discarded = serializers.ListField(child=serializers.IntegerField())
        released = serializers.ListField(
            child=serializers.IntegerField(), help_text="Parked dead letters outside the selection, now applied."
        )
        refused = inline_serializer("DeadLetterRefusal", many=True, fields={
            "id": serializers.IntegerField(), "error": serializers.CharField(),
        })

        class Meta:
            ref_name = "DeadLetterDiscardManyOutput"

    @extend_schema(request=InputSerializer, responses=OutputSerializer, operation_id="api_v1_dead_letters_discard_many")
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        summary = deadletter_discard_many(
            dead_letter_ids=serializer.validated_data["ids"], actor=request.user,
            reason=serializer.validated_data["reason"],
        )
        data = {
            "discarded": summary.discarded, "released": summary.released,
            "refused": [{"id": i, "error": error} for i, error in summary.refused.items()],
        }
        return Response(self.OutputSerializer(data).data)


class DeadLetterEditAndReplayApi(APIView):
    """Replace the payload (validated against the event's schema), then replay. An edit that changes a billed or
    identity field (the event type's `approval_fields`) answers outcome `awaiting_approval`: nothing is applied
    until a second person with finance's permission approves it (`dead-letter-edits/<id>/approve/`)."""

    permission_classes = [IsAuthenticated, CanEdit]
    throttle_scope = "replay"

    class InputSerializer(StrictInput, serializers.Serializer):
        payload = serializers.DictField(help_text="The whole event as JSON, as the dead letter's detail shows it.")

        class Meta:
            ref_name = "DeadLetterEditInput"

    @extend_schema(request=InputSerializer, responses=ResultSerializer)
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(DeadLetter, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payload = json.dumps(serializer.validated_data["payload"])
        return _result(deadletter_edit_and_replay(dead_letter_id=pk, actor=request.user, payload=payload), request)


class DeadLetterEditSerializer(serializers.ModelSerializer):
    proposed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    rejected_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = DeadLetterEdit
        fields = [
            "id", "dead_letter", "status", "guarded_fields", "payload_diff", "proposed_by", "proposed_at",
            "approved_by", "approved_at", "rejected_by", "rejected_at", "reason",
        ]


class DeadLetterEditFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=DeadLetterEdit.Status.choices)

    class Meta:
        model = DeadLetterEdit
        fields: list[str] = []


class DeadLetterEditListApi(ListAPIView):
    """Edits of dead letters, newest first: `?status=pending` is what waits for finance's approval."""

    permission_classes = [IsAuthenticated, ModelPermissions]
    queryset = DeadLetterEdit.objects.select_related("proposed_by", "approved_by", "rejected_by").order_by("-id")
    serializer_class = DeadLetterEditSerializer
    filterset_class = DeadLetterEditFilter


class DeadLetterEditApproveApi(APIView):
    """Approve a colleague's pending edit of billed fields: it is applied and replayed (400 for your own edit)."""

    permission_classes = [IsAuthenticated, CanApproveEdit]
    throttle_scope = "replay"

    @extend_schema(request=None, responses=ResultSerializer)
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(DeadLetterEdit, pk=pk)
        return _result(deadletter_edit_approve(edit_id=pk, actor=request.user), request)


class DeadLetterEditRejectApi(APIView):
    permission_classes = [IsAuthenticated, CanApproveEdit]

    class InputSerializer(StrictInput, serializers.Serializer):
        reason = serializers.CharField(max_length=2000)

        class Meta:
            ref_name = "DeadLetterEditRejectInput"

    @extend_schema(request=InputSerializer, responses=DeadLetterEditSerializer)
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(DeadLetterEdit, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        edit = deadletter_edit_reject(edit_id=pk, actor=request.user, **serializer.validated_data)
        return Response(DeadLetterEditSerializer(edit).data)
