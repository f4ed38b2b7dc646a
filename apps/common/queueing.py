"""Queue Celery tasks from services by name, in the caller's trace, robustly after commit.

Services never import their app's `tasks` module (tasks import services: that would be a cycle); they name the
task instead. A task queued on commit is sent only once the data it reads is committed, and a Celery broker that
is down then must not fail the caller, whose transaction has already committed: every such task has a sweep
that catches up (stale PDFs, stale replays).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import current_app
from django.db import transaction

from apps.common.tracing import current_traceparent, resumed

logger = logging.getLogger(__name__)


def enqueue(task_name: str, *args: Any, traceparent: str | None = None) -> None:
    """Send the registered task `task_name` with `args` now, continuing `traceparent` when given."""
    with resumed(traceparent):
        _registered(task_name).delay(*args)


def enqueue_on_commit(task_name: str, *args: Any, on_failure: Callable[[], object] | None = None) -> None:
    """Send `task_name` with `args` when the current transaction commits, in the trace that queued it (its span
    has ended by then). A failure to send is logged by Django (`robust=True`), never raised into the commit;
    `on_failure` runs first, so the caller can note that the task was never sent (its sweep then need not wait)."""
    traceparent = current_traceparent()

    def send() -> None:
        try:
            enqueue(task_name, *args, traceparent=traceparent)
        except Exception:
            if on_failure is not None:
                _noted(on_failure)
            raise

    transaction.on_commit(send, robust=True)


def _noted(on_failure: Callable[[], object]) -> None:
    try:
        on_failure()
    except Exception:  # noqa: BLE001 - the send failed already; its sweep catches up either way
        logger.exception("could not note a task that was not sent")


def _registered(task_name: str) -> Any:
    """The task named `task_name`; the first miss imports every app's `tasks` module (Celery's autodiscovery
    runs only in a worker on its own), so a web or consumer process finds the task the same way. Forced
    autodiscovery imports just those modules: the loader's `import_default_modules` would also run Celery's
    Django fixup, which calls `django.setup()` again (re-applying LOGGING drops handlers added since) and
    every system check, in the middle of a request or a consumer batch."""
    tasks = current_app.tasks
    if task_name not in tasks:
        current_app.autodiscover_tasks(force=True)
    return tasks[task_name]
