"""Health probes for load balancers and orchestrators; anonymous by design.

Apps add what they know about their background processes to `/readyz` with `register_readiness_report`
(the outbox reports refusals its relay cannot get past); apps/common imports no app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

# name -> a function returning None when all is well, else a JSON-able description of the problem.
_readiness_reports: dict[str, Callable[[], object | None]] = {}


def register_readiness_report(name: str, report: Callable[[], object | None]) -> None:
    _readiness_reports[name] = report


def live(_request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(_request: HttpRequest) -> JsonResponse:
    """503 only when the database does not answer. Kafka and the workers are not a reason to take the web tier
    out of service (it must work while they are down), so their problems make the answer `"degraded"` with the
    details, still 200: visible to whoever looks and to monitoring that reads the body, harmless to routing."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        return JsonResponse({"status": "unavailable", "database": str(error)}, status=503)
    body: dict[str, object] = {"status": "ok", "database": "ok"}
    for name, report in sorted(_readiness_reports.items()):
        try:
            problem = report()
        except Exception as error:  # noqa: BLE001 - a broken report must not break the probe
            logger.exception("readiness report %s failed", name)
            problem = {"status": "unknown", "error": str(error)}
        body[name] = "ok" if problem is None else problem
        if problem is not None:
            body["status"] = "degraded"
    return JsonResponse(body)
