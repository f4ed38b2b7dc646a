"""Health probes for load balancers and orchestrators; anonymous by design, so they name failing components
and nothing else (no error text: it carries hosts, ports and user names). The cause goes to the log.

Apps add what they know about their background processes with `register_degradation` (the outbox names its
relay when it keeps being refused); apps/common imports no app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse

from apps.common.selectors import stale_components

logger = logging.getLogger(__name__)

# name -> a function returning True while that background component is in trouble (details: admin and log).
_DEGRADATIONS: dict[str, Callable[[], bool]] = {}


def register_degradation(name: str, degraded: Callable[[], bool]) -> None:
    _DEGRADATIONS[name] = degraded


def live(_request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(_request: HttpRequest) -> JsonResponse:
    """503 only when the database does not answer. Kafka and the workers are not a reason to take the web tier out
    of service (it must work while they are down): their trouble makes the answer `"degraded"`, still 200, naming
    the component — visible to whoever looks and to monitoring that reads the body, harmless to routing.

    `stale` names the worker kinds (`relay`, `consumer:<group>`) whose every process has been silent for
    HEARTBEAT_STALE_SECONDS: shown, not failed, since a stopped consumer is no reason to take the web away.
    """
    failing = [name for name, check in _CHECKS.items() if not _passes(name, check)]
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    degraded = [name for name, check in sorted(_DEGRADATIONS.items()) if _is_degraded(name, check)]
    stale = _stale_workers()
    if degraded:
        return JsonResponse({"status": "degraded", "failing": [], "degraded": degraded, "stale": stale})
    return JsonResponse({"status": "ok", "failing": [], "stale": stale})


def _stale_workers() -> list[str]:
    try:
        return stale_components()
    except Exception:  # noqa: BLE001 - the database answered SELECT 1; a missing table must not fail the probe
        logger.exception("readiness: heartbeats could not be read")
        return []


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


def _is_degraded(name: str, check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:  # noqa: BLE001 - a broken report must not break the probe; unknown counts as trouble
        logger.exception("degradation check %s failed", name)
        return True
