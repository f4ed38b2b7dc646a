"""Health probes for load balancers and orchestrators; anonymous by design, so they name failing components
and nothing else (no error text: it carries hosts, ports and user names). The cause goes to the log."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def live(_request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(_request: HttpRequest) -> JsonResponse:
    """Ready when the database answers; Kafka is not checked: the web tier must work while it is down."""
    failing = [name for name, check in _CHECKS.items() if not _passes(name, check)]
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    return JsonResponse({"status": "ok", "failing": []})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


_CHECKS = {"database": _database}


def _passes(name: str, check) -> bool:  # noqa: ANN001
    try:
        check()
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        logger.exception("readiness check %s failed", name)
        return False
    return True
