"""REST API of the dead-letter ledger: list, detail, replay, discard — with the same permissions as the admin."""

from __future__ import annotations

from typing import Any

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.permissions import ModelPermissions
from apps.consumers.models import DeadLetter, DeadLetterReplay
from apps.consumers.services import ReplayResult, deadletter_discard, deadletter_replay, payload_json


class CanReplay(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.user.has_perm("consumers.replay_deadletter")


class CanDiscard(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.user.has_perm("consumers.discard_deadletter")


class DeadLetterFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DeadLetter.Status.choices)
    group = django_filters.CharFilter()
    type = django_filters.CharFilter(field_name="event_type")
    fingerprint = django_filters.CharFilter()
    reason = django_filters.ChoiceFilter(choices=DeadLetter.Reason.choices)
    key = django_filters.CharFilter()
    event_id = django_filters.UUIDFilter()

    class Meta:
        model = DeadLetter
        fields: list[str] = []


class DeadLetterSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = DeadLetter
        fields = [
            "id", "status", "group", "topic", "partition", "offset", "key", "event_id", "event_type", "event_version",
            "reason", "handler", "exception_class", "error_message", "fingerprint", "attempts", "first_failed_at",
            "last_failed_at", "resolved_at", "blocked_by",
        ]


class HistorySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.get_username", default=None)

    class Meta:
        model = DeadLetterReplay
        fields = ["at", "action", "outcome", "actor", "error", "reason", "payload_diff"]


class DeadLetterDetailSerializer(DeadLetterSummarySerializer):
    payload = serializers.SerializerMethodField(help_text="The value as JSON, or null when it is not JSON.")
    value_text = serializers.CharField(help_text="The value as text (undecodable bytes replaced).")
    headers = serializers.JSONField()
    history = HistorySerializer(many=True)

    class Meta(DeadLetterSummarySerializer.Meta):
        fields = [*DeadLetterSummarySerializer.Meta.fields, "payload", "value_text", "headers", "traceback", "history"]

    def get_payload(self, dead_letter: DeadLetter) -> Any:
        return payload_json(dead_letter)


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
    new_head = serializers.IntegerField(allow_null=True, help_text="A released message that failed and now blocks its key.")
    dead_letter_id = serializers.IntegerField()
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
        "dead_letter_id": dead_letter.pk, "status": dead_letter.status,
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

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000)

    @extend_schema(request=InputSerializer, responses=ResultSerializer)
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(DeadLetter, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return _result(deadletter_discard(dead_letter_id=pk, actor=request.user, **serializer.validated_data), request)
