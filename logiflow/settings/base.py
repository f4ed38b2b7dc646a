"""Settings shared by every environment; everything deployment-specific comes from the environment."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "apps.common",
    "apps.outbox",
    "apps.consumers",
    "apps.routing",
    "apps.invoicing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.common.tracing.TraceparentMiddleware",
]

ROOT_URLCONF = "logiflow.urls"
WSGI_APPLICATION = "logiflow.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_config(url: str) -> dict:
    """DATABASES["default"] from a PostgreSQL URL (a Unix socket goes in `?host=/path`)."""
    config = environ.Env.db_url_config(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise environ.ImproperlyConfigured(f"LogiFlow runs on PostgreSQL only; DATABASE_URL names {config['ENGINE']}")
    return config


# Each environment sets DATABASE_URL (local and test start an embedded PostgreSQL when it is unset).
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": env("DEFAULT_FILE_STORAGE", default="django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- REST API -----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.common.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LogiFlow API",
    "DESCRIPTION": "Routing and invoicing for LogiFlow, coupled only by domain events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "DeadLetterStatusEnum": "apps.consumers.models.DeadLetter.Status",
    },
}

# --- Kafka ----------------------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS = env("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:19092")
KAFKA_TOPIC_PARTITIONS = env.int("KAFKA_TOPIC_PARTITIONS", default=6)
# Namespaces the topics on a shared cluster (e.g. "staging."); the events keep their logical topic names.
KAFKA_TOPIC_PREFIX = env("KAFKA_TOPIC_PREFIX", default="")
KAFKA_TOPIC_REPLICATION_FACTOR = env.int("KAFKA_TOPIC_REPLICATION_FACTOR", default=1)
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=45000)
# Extra librdkafka properties, e.g. "security.protocol=SASL_SSL,sasl.mechanism=PLAIN".
KAFKA_CLIENT_CONFIG = env.dict("KAFKA_CLIENT_CONFIG", default={})

# --- Outbox relay -------------------------------------------------------------------
OUTBOX_RELAY_BATCH_SIZE = env.int("OUTBOX_RELAY_BATCH_SIZE", default=1000)
OUTBOX_RELAY_POLL_INTERVAL_S = env.float("OUTBOX_RELAY_POLL_INTERVAL_S", default=1.0)
# Batches in flight at once (each on its own connection), overlapping database and broker round trips.
OUTBOX_RELAY_PIPELINE_DEPTH = env.int("OUTBOX_RELAY_PIPELINE_DEPTH", default=2)
# message.timeout.ms: after this a row's send counts as failed (it stays pending and is retried).
OUTBOX_RELAY_DELIVERY_TIMEOUT_S = env.float("OUTBOX_RELAY_DELIVERY_TIMEOUT_S", default=30.0)
OUTBOX_RELAY_RETRY_MAX_S = env.float("OUTBOX_RELAY_RETRY_MAX_S", default=30.0)
OUTBOX_RELAY_SHUTDOWN_GRACE_S = env.float("OUTBOX_RELAY_SHUTDOWN_GRACE_S", default=10.0)
# No relay statement runs longer (statement_timeout); a lane stuck past the pipeline's bound (derived from it)
# makes the relay restart itself, or exit non-zero when the lane does not let go.
OUTBOX_RELAY_STALL_TIMEOUT_S = env.float("OUTBOX_RELAY_STALL_TIMEOUT_S", default=60.0)
# The relay hands the producer a whole batch at once, so waiting for more (linger) only adds latency.
OUTBOX_RELAY_LINGER_MS = env.int("OUTBOX_RELAY_LINGER_MS", default=1)
# Broker amnesia: the relay checks every this many seconds (and at start) that the cluster still holds what it
# acknowledged; when it does not (emptied, rebuilt), rows published within the window are sent again.
OUTBOX_RELAY_BROKER_CHECK_S = env.float("OUTBOX_RELAY_BROKER_CHECK_S", default=60.0)
OUTBOX_REPUBLISH_WINDOW_HOURS = env.float("OUTBOX_REPUBLISH_WINDOW_HOURS", default=24.0)
OUTBOX_RETENTION_HOURS = env.int("OUTBOX_RETENTION_HOURS", default=24 * 7)
OUTBOX_PURGE_BATCH_SIZE = env.int("OUTBOX_PURGE_BATCH_SIZE", default=5000)

# --- Consumers and dead letters ---------------------------------------------------------
CONSUMER_BATCH_SIZE = env.int("CONSUMER_BATCH_SIZE", default=500)
CONSUMER_POLL_TIMEOUT_S = env.float("CONSUMER_POLL_TIMEOUT_S", default=1.0)
# Handler attempts (the first included) before a message goes to the ledger; the retries of one message
# must also end within CONSUMER_RETRY_MAX_TOTAL_S, well below Kafka's max.poll.interval.ms (300 s).
CONSUMER_MAX_ATTEMPTS = env.int("CONSUMER_MAX_ATTEMPTS", default=5)
CONSUMER_RETRY_BACKOFF_INITIAL_S = env.float("CONSUMER_RETRY_BACKOFF_INITIAL_S", default=0.5)
CONSUMER_RETRY_BACKOFF_MAX_S = env.float("CONSUMER_RETRY_BACKOFF_MAX_S", default=10.0)
CONSUMER_RETRY_MAX_TOTAL_S = env.float("CONSUMER_RETRY_MAX_TOTAL_S", default=60.0)
# Failed replays of one dead letter before plain replay is refused (edit or discard it instead).
CONSUMER_REPLAY_MAX_ATTEMPTS = env.int("CONSUMER_REPLAY_MAX_ATTEMPTS", default=10)
# Larger admin selections are replayed in the background by Celery, in tasks of this many.
CONSUMER_REPLAY_SYNC_LIMIT = env.int("CONSUMER_REPLAY_SYNC_LIMIT", default=20)
CONSUMER_REPLAY_TASK_CHUNK = env.int("CONSUMER_REPLAY_TASK_CHUNK", default=200)
# Keep inbox rows longer than a topic can ever be re-read (Kafka retention), or an old event could apply twice.
CONSUMER_INBOX_RETENTION_DAYS = env.int("CONSUMER_INBOX_RETENTION_DAYS", default=14)
CONSUMER_STATS_INTERVAL_S = env.float("CONSUMER_STATS_INTERVAL_S", default=60.0)

# --- Routing ------------------------------------------------------------------------
ROUTING_MAX_STOPS = env.int("ROUTING_MAX_STOPS", default=50)
ROUTING_DWELL_MINUTES = env.int("ROUTING_DWELL_MINUTES", default=15)

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")


def filesystem_transport_options(folder: Path) -> dict:
    """Kombu's `filesystem://` transport with every folder under `folder`.

    Its control folder defaults to ./control, which would write into whatever directory a process started in.
    """
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_transport_options(
        Path(env("CELERY_FILESYSTEM_DIR", default=str(VAR_DIR / "celery")))
    )
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# A leaking PDF renderer recycles its worker process instead of taking the host down.
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("CELERY_WORKER_MAX_TASKS_PER_CHILD", default=200)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", default=400_000)  # KiB
CELERY_BEAT_SCHEDULE: dict = {}
CELERY_BEAT_SCHEDULE["outbox-purge-published"] = {"task": "apps.outbox.tasks.purge_published_events", "schedule": 3600}
# Pending outbox rows without a queue entry (an older release wrote them during a deploy) are queued.
CELERY_BEAT_SCHEDULE["outbox-requeue-stranded"] = {
    "task": "apps.outbox.tasks.requeue_stranded_events",
    "schedule": env.float("OUTBOX_STRANDED_SWEEP_INTERVAL_S", default=300.0),
}
CELERY_BEAT_SCHEDULE["consumers-purge-inbox"] = {"task": "apps.consumers.tasks.purge_inbox", "schedule": 6 * 3600}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Invoicing -------------------------------------------------------------------------
# The issuer printed in every invoice header.
INVOICING_ISSUER = {
    "name": env("INVOICING_ISSUER_NAME", default="LogiFlow Logistics Ltd."),
    "address": env("INVOICING_ISSUER_ADDRESS", default="1 Harbour Road\n34000 Istanbul, Turkey"),
    "vat_id": env("INVOICING_ISSUER_VAT_ID", default="TR0000000000"),
    "payment_note": env("INVOICING_PAYMENT_NOTE", default="Please quote the invoice number with your payment."),
}
# Render attempts per PDF version, counted before each render, so a renderer that crashes its worker ends `failed`.
INVOICING_PDF_MAX_ATTEMPTS = env.int("INVOICING_PDF_MAX_ATTEMPTS", default=10)
# A PDF still pending this long after issue lost its task (broker down at commit); beat queues it again.
INVOICING_PDF_STALE_MINUTES = env.int("INVOICING_PDF_STALE_MINUTES", default=15)
CELERY_BEAT_SCHEDULE["invoicing-requeue-stale-pdfs"] = {
    "task": "apps.invoicing.tasks.requeue_stale_pdfs", "schedule": 5 * 60,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # WeasyPrint's font subsetting logs every table it touches at INFO.
        "fontTools": {"level": "WARNING"},
    },
}
