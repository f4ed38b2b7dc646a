"""The Celery application; it reads every `CELERY_*` setting from Django settings."""

import os

from celery import Celery, signals

# Production unless told otherwise: only manage.py may default to the local settings (DEBUG, a public key).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "logiflow.settings.production")

app = Celery("logiflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.celeryd_init.connect
@signals.before_task_publish.connect
def _prepare_filesystem_transport(**_: object) -> None:
    """The serverless default transport (`filesystem://`) needs its folders before the first message."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)


@signals.worker_process_init.connect
def _trace_pool_process(**_: object) -> None:
    """OpenTelemetry per prefork child (its exporter thread must not be forked); off without its endpoint."""
    from apps.common.telemetry import configure_telemetry

    configure_telemetry("logiflow-celery")


@signals.worker_init.connect
def _trace_worker(sender: object = None, **_: object) -> None:
    """The solo and thread pools run tasks in the worker's own process: trace it there."""
    pool = getattr(sender, "pool_cls", None)  # the name ("prefork", "solo") or, resolved, the pool's class
    if "prefork" not in (pool if isinstance(pool, str) else getattr(pool, "__module__", "")):
        _trace_pool_process()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_errors(logger: object = None, **_: object) -> None:
    """LOG_FORMAT=plain lets Celery install its own handlers: they redact error text as the LOGGING ones do."""
    from apps.common.logs import RedactErrors

    for handler in getattr(logger, "handlers", []):
        if not any(isinstance(existing, RedactErrors) for existing in handler.filters):
            handler.addFilter(RedactErrors())


@signals.before_task_publish.connect
def _carry_trace(headers: dict | None = None, **_: object) -> None:
    from apps.common.tracing import task_publish_headers

    task_publish_headers(headers)


@signals.task_prerun.connect
def _enter_trace(task_id: str = "", task: object = None, **_: object) -> None:
    from apps.common.tracing import task_trace_enter

    task_trace_enter(task_id, getattr(getattr(task, "request", None), "traceparent", None))


@signals.task_postrun.connect
def _leave_trace(task_id: str = "", **_: object) -> None:
    from apps.common.tracing import task_trace_exit

    task_trace_exit(task_id)


_heartbeat: list = []  # the running worker's BackgroundHeartbeat, at most one


@signals.worker_ready.connect
def _start_heartbeat(**_: object) -> None:
    """The worker's heartbeat row (kind `celery`), for the dashboard and /readyz: the default broker
    (`filesystem://`) answers no `inspect ping`, and a process reporting through the database needs no broker."""
    from apps.common.models import Heartbeat
    from apps.common.workers import BackgroundHeartbeat

    heartbeat = BackgroundHeartbeat(Heartbeat.Kind.CELERY)
    heartbeat.start()
    _heartbeat.append(heartbeat)


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: object) -> None:
    """A clean stop removes the row: a worker stopped on purpose is not silent."""
    while _heartbeat:
        _heartbeat.pop().stop()


@signals.worker_ready.connect
def _serve_metrics(**_: object) -> None:
    """CELERY_METRICS_PORT (0: off). Tasks run in prefork children: their counters reach this endpoint only when
    PROMETHEUS_MULTIPROC_DIR names an empty directory shared by the worker and its children (docs/operations.md)."""
    from django.conf import settings

    from apps.common.metrics import serve_worker_metrics

    serve_worker_metrics(settings.CELERY_METRICS_PORT, name="celery")
