"""Health probes for load balancers and orchestrators; anonymous by design, so an anonymous caller learns the
status alone. Staff and monitoring (the metrics token or an allowed network, `trust.is_metrics_client`) also see
which components fail, which workers are stale and what is degraded: names only, never error text (it carries
hosts, ports and user names). The cause goes to the log.

Apps add what they know about their background processes with `register_degradation` (the outbox names its
relay when it keeps being refused), or `register_degradations` when the names are known only when asked (the
operations app names each stalled consumer group); apps/common imports no app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse

from apps.common.selectors import stale_components
from apps.common.trust import is_metrics_client

logger = logging.getLogger(__name__)

# name -> a function returning True while that background component is in trouble (details: admin and log).
_DEGRADATIONS: dict[str, Callable[[], bool]] = {}


# name -> a function naming the components in trouble now (the name stands for them all if the function fails).
_DEGRADATION_SOURCES: dict[str, Callable[[], list[str]]] = {}


def register_degradation(name: str, degraded: Callable[[], bool]) -> None:
    _DEGRADATIONS[name] = degraded


def register_degradations(name: str, degraded: Callable[[], list[str]]) -> None:
    _DEGRADATION_SOURCES[name] = degraded


def live(_request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """Ready when the database answers (503 otherwise); Kafka is not checked: the web tier must work while it is down.

    `stale` names the worker kinds (`relay`, `consumer:<group>`) whose every process has been silent for
    HEARTBEAT_STALE_SECONDS; `degraded` (present only then, with status "degraded") names components that report
    trouble a person must fix, e.g. the relay refused by the cluster. Both are shown, not failed: a stopped consumer
    or a missing ACL is no reason to take the web away. Monitoring reads the body; an anonymous caller gets
    `status` alone (the names map the deployment: consumer groups, workers).
    """
    failing = [name for name, check in _CHECKS.items() if not _passes(name, check)]
    if failing:
        return _answer(request, {"status": "unavailable", "failing": failing}, status=503)
    body: dict[str, object] = {"status": "ok", "failing": [], "stale": _stale_workers()}
    degraded = [name for name, check in sorted(_DEGRADATIONS.items()) if _is_degraded(name, check)]
    for name, source in sorted(_DEGRADATION_SOURCES.items()):
        degraded += _degraded_parts(name, source)
    if degraded:
        body.update(status="degraded", degraded=degraded)
    return _answer(request, body)


def _answer(request: HttpRequest, body: dict[str, object], status: int = 200) -> JsonResponse:
    user = getattr(request, "user", None)
    if (user is not None and user.is_active and user.is_staff) or is_metrics_client(request):
        return JsonResponse(body, status=status)
    return JsonResponse({"status": body["status"]}, status=status)


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


def _passes(name: str, check: Callable[[], object]) -> bool:
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


def _degraded_parts(name: str, source: Callable[[], list[str]]) -> list[str]:
    try:
        return source()
    except Exception:  # noqa: BLE001 - as above: a broken report counts as trouble, under the source's name
        logger.exception("degradation source %s failed", name)
        return [name]
