"""The web's /metrics endpoint: Prometheus' text format for a scraper with the token or from an allowed network,
and for people with the dashboard permission."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.common.trust import is_metrics_client
from apps.ops.metrics import metrics_response


class MetricsAccess(BasePermission):
    """Prometheus with METRICS_TOKEN or from METRICS_ALLOWED_NETWORKS; people with the dashboard permission."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_metrics_client(request._request) or request.user.has_perm("common.view_flow_dashboard")


class _AnyAccept(BaseContentNegotiation):
    """The exposition format is the only answer: a scraper's Accept header must not earn a 406."""

    def select_parser(self, request: Request, parsers: list) -> None:
        return None

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type


@extend_schema(exclude=True)  # operational, not part of the business API
class MetricsApi(APIView):
    """GET: this web process's metrics and the database gauges, in Prometheus' text format."""

    permission_classes = [MetricsAccess]
    throttle_classes: list = []
    content_negotiation_class = _AnyAccept

    def get(self, request: Request) -> HttpResponse:
        return metrics_response()
