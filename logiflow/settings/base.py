"""Settings shared by every environment; everything deployment-specific comes from the environment."""

import ipaddress
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# Local state of `make run` (database, broker data, Celery's queue folder, media, logs); tests point it elsewhere.
VAR_DIR = Path(env("LOGIFLOW_VAR_DIR", default=str(BASE_DIR / "var")))

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
    "knox",
    "axes",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.common",
    "apps.contracts",
    "apps.outbox",
    "apps.consumers",
    "apps.routing",
    "apps.invoicing",
    "apps.ops",
]

MIDDLEWARE = [
    "apps.common.metrics.RequestMetricsMiddleware",
    # Outside the rest, so it sees every answer: Django's own error pages under /api/ become JSON.
    "apps.common.errors.ApiErrorsAsJson",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Pages in the reader's time zone (their browser's, from a cookie), else the site's; the API keeps the site's.
    "apps.common.timezones.ReaderTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.common.tracing.TraceparentMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

# django-axes counts failed logins (admin and API token) and locks the (user, address) pair out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
# Per username and address together: a stranger cannot lock a real user out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "apps.common.trust.client_address"

# Which address is the client, for the API throttles, django-axes and /metrics alike (apps/common/trust.py): the
# connecting address, unless it lies in one of these networks (the TLS proxy in front of gunicorn); then the
# X-Forwarded-For entry that proxy appended. Empty (the default): no proxy is trusted and the header is ignored.
TRUSTED_PROXY_NETWORKS = env.list("TRUSTED_PROXY_NETWORKS", default=[])
for _network in TRUSTED_PROXY_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise environ.ImproperlyConfigured(f"TRUSTED_PROXY_NETWORKS: {_network!r} is no network") from None


ROOT_URLCONF = "logiflow.urls"
WSGI_APPLICATION = "logiflow.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project-wide template overrides (the admin's base_site: LogiFlow's admin stylesheet on every page).
        "DIRS": [BASE_DIR / "logiflow" / "templates"],
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
    # Django's PostgreSQL engine, plus writes sent with their transaction's COMMIT (the outbox's publish).
    config["ENGINE"] = "apps.common.db"
    # A server that vanished (host down, a cut network) is noticed within about a minute, not after the kernel's
    # two hours: libpq's TCP keepalives, on every connection of every process.
    config.setdefault("OPTIONS", {}).update(
        {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    )
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
# The site's time zone: the API, the invoice PDF and readers whose browser names no zone see times in it, named
# (2026-11-30 07:00 CET); pages otherwise show (and the admin's forms read) times in the reader's own zone.
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
FORMAT_MODULE_PATH = ["logiflow.formats"]
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
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "apps.common.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["apps.common.filters.StrictFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "apps.common.schema.AutoSchema",
    "EXCEPTION_HANDLER": "apps.common.errors.exception_handler",
    # JSON only: the API documents JSON bodies, and form encodings blur "empty" and "missing".
    "DEFAULT_PARSER_CLASSES": ["apps.common.parsers.BoundedJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.common.throttling.AnonRateThrottle",
        "apps.common.throttling.UserRateThrottle",
        "apps.common.throttling.ScopedRateThrottle",
    ],
    # Scoped rates cover what costs work or guards credentials: token creation, recalculation, replay.
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("API_THROTTLE_ANON", default="60/minute"),
        "user": env("API_THROTTLE_USER", default="1200/minute"),
        "auth": env("API_THROTTLE_AUTH", default="10/minute"),
        "recalculate": env("API_THROTTLE_RECALCULATE", default="30/minute"),
        "replay": env("API_THROTTLE_REPLAY", default="60/minute"),
    },
}
# The largest request body the API parses (a 50-stop route is about 5 KB); larger ones get 413.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# API tokens (django-rest-knox): stored as hashes, valid for API_TOKEN_TTL_HOURS; a client logs in again to renew.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env.int("API_TOKEN_TTL_HOURS", default=10)),
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_LIMIT_PER_USER": env.int("API_TOKEN_LIMIT_PER_USER", default=20),
}
# Throttle counters live in the cache: set CACHE_URL (e.g. redis://…) when several web processes serve the API.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
SPECTACULAR_SETTINGS = {
    "TITLE": "LogiFlow API",
    "DESCRIPTION": "Routing and invoicing for LogiFlow, coupled only by domain events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get components of their own, so what input must satisfy (e.g. minLength) can be stated.
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and Swagger UI need a logged-in user unless API_DOCS_PUBLIC opens them.
    "SERVE_PERMISSIONS": [
        "rest_framework.permissions.AllowAny" if env.bool("API_DOCS_PUBLIC", default=False)
        else "rest_framework.permissions.IsAuthenticated"
    ],
    # Swagger UI's files come from this server (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.common.schema.add_error_responses",
    ],
    # `<id:…>` path parameters (apps/common/converters.py): whole numbers within bigint.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**63 - 1}},
    "ENUM_NAME_OVERRIDES": {
        "DeadLetterStatusEnum": "apps.consumers.models.DeadLetter.Status",
        "RouteStatusEnum": "apps.routing.models.Route.Status",
        "InvoiceStatusEnum": "apps.invoicing.models.Invoice.Status",
    },
}

# Content-Security-Policy (django-csp): scripts only from this server, no inline script, nothing from elsewhere.
# Inline styles stay allowed: the admin and Swagger UI set style attributes.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Kafka ----------------------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS = env("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:19092")
KAFKA_TOPIC_PARTITIONS = env.int("KAFKA_TOPIC_PARTITIONS", default=6)
# Namespaces the topics on a shared cluster (e.g. "staging."); the events keep their logical topic names.
KAFKA_TOPIC_PREFIX = env("KAFKA_TOPIC_PREFIX", default="")
KAFKA_TOPIC_REPLICATION_FACTOR = env.int("KAFKA_TOPIC_REPLICATION_FACTOR", default=1)
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=45000)
# How long a consumer's fetch may wait on the broker for data (librdkafka's fetch.wait.max.ms). Apache Kafka answers
# as soon as data arrives, so librdkafka's 500 costs nothing there; Tansu answers only when the wait ends, so every
# event waited up to this long for its consumer: the embedded Tansu's workers get 10 (apps/devstack/tansu.py).
KAFKA_FETCH_WAIT_MAX_MS = env.int("KAFKA_FETCH_WAIT_MAX_MS", default=500)
# librdkafka's partition.assignment.strategy for the consumer groups.
KAFKA_ASSIGNMENT_STRATEGY = env("KAFKA_ASSIGNMENT_STRATEGY", default="cooperative-sticky")
# PLAINTEXT, or SASL_PLAINTEXT / SASL_SSL: then every client authenticates as its process kind's principal (below).
KAFKA_SECURITY_PROTOCOL = env("KAFKA_SECURITY_PROTOCOL", default="PLAINTEXT")
KAFKA_SASL_MECHANISM = env("KAFKA_SASL_MECHANISM", default="SCRAM-SHA-512")
# One principal per process kind (apps/common/kafka.py, PRINCIPALS): each process is given only its own, and no
# credential has a default; a client built for a kind whose credentials are missing stops the process.
KAFKA_PRINCIPALS = {
    kind: {"username": env(f"KAFKA_{kind.upper()}_USERNAME", default=""),
           "password": env(f"KAFKA_{kind.upper()}_PASSWORD", default="")}
    for kind in ("relay", "consumer", "monitor", "admin")
}
# Extra librdkafka properties, e.g. "ssl.ca.location=/etc/ssl/kafka-ca.pem".
KAFKA_CLIENT_CONFIG = env.dict("KAFKA_CLIENT_CONFIG", default={})

# --- Outbox relay -------------------------------------------------------------------
OUTBOX_RELAY_BATCH_SIZE = env.int("OUTBOX_RELAY_BATCH_SIZE", default=1000)
OUTBOX_RELAY_POLL_INTERVAL_S = env.float("OUTBOX_RELAY_POLL_INTERVAL_S", default=1.0)
# Batches open at once (each on its own connection, one thread), overlapping database and broker round trips.
OUTBOX_RELAY_PIPELINE_DEPTH = env.int("OUTBOX_RELAY_PIPELINE_DEPTH", default=2)
# message.timeout.ms: after this a row's send counts as failed (it stays pending and is retried).
OUTBOX_RELAY_DELIVERY_TIMEOUT_S = env.float("OUTBOX_RELAY_DELIVERY_TIMEOUT_S", default=30.0)
OUTBOX_RELAY_RETRY_MAX_S = env.float("OUTBOX_RELAY_RETRY_MAX_S", default=30.0)
OUTBOX_RELAY_SHUTDOWN_GRACE_S = env.float("OUTBOX_RELAY_SHUTDOWN_GRACE_S", default=10.0)
# No relay batch statement runs longer (statement_timeout): past it the open batches roll back and the relay
# restarts.
OUTBOX_RELAY_STALL_TIMEOUT_S = env.float("OUTBOX_RELAY_STALL_TIMEOUT_S", default=60.0)
# A relay whose every round failed (database refusing, statements timing out) for this long exits non-zero (3) so
# its supervisor starts a fresh process; 0: retry in-process for ever.
OUTBOX_RELAY_GIVE_UP_S = env.float("OUTBOX_RELAY_GIVE_UP_S", default=300.0)
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
# In-batch retries: handler attempts (the first included) of one message, with backoff, all within the
# batch's retry budget (seconds for the whole batch, not per message). The worker refuses to start unless
# the budget is at most a third of Kafka's max.poll.interval.ms (librdkafka default 300 s).
CONSUMER_MAX_ATTEMPTS = env.int("CONSUMER_MAX_ATTEMPTS", default=5)
CONSUMER_RETRY_BACKOFF_INITIAL_S = env.float("CONSUMER_RETRY_BACKOFF_INITIAL_S", default=0.5)
CONSUMER_RETRY_BACKOFF_MAX_S = env.float("CONSUMER_RETRY_BACKOFF_MAX_S", default=10.0)
CONSUMER_RETRY_BATCH_BUDGET_S = env.float("CONSUMER_RETRY_BATCH_BUDGET_S", default=30.0)
# Then the message waits in the ledger as `retrying` (its key parked behind it) and is retried automatically
# this many times, the delay doubling from INITIAL up to MAX; after the last it is a pending dead letter.
CONSUMER_AUTO_RETRY_MAX_ATTEMPTS = env.int("CONSUMER_AUTO_RETRY_MAX_ATTEMPTS", default=6)
CONSUMER_AUTO_RETRY_BACKOFF_INITIAL_S = env.float("CONSUMER_AUTO_RETRY_BACKOFF_INITIAL_S", default=30.0)
CONSUMER_AUTO_RETRY_BACKOFF_MAX_S = env.float("CONSUMER_AUTO_RETRY_BACKOFF_MAX_S", default=3600.0)
# How often Celery beat runs the due automatic retries (seconds).
CONSUMER_AUTO_RETRY_SWEEP_S = env.float("CONSUMER_AUTO_RETRY_SWEEP_S", default=10.0)
# Failed replays of one dead letter before plain replay is refused (edit or discard it instead).
CONSUMER_REPLAY_MAX_ATTEMPTS = env.int("CONSUMER_REPLAY_MAX_ATTEMPTS", default=10)
# Larger admin selections are replayed in the background by Celery, in tasks of this many.
CONSUMER_REPLAY_SYNC_LIMIT = env.int("CONSUMER_REPLAY_SYNC_LIMIT", default=20)
CONSUMER_REPLAY_TASK_CHUNK = env.int("CONSUMER_REPLAY_TASK_CHUNK", default=200)
# A replay task starts no new dead letter after this many seconds and hands the rest to a new task, so the
# time limit never kills it with work left (keep it well below CELERY_TASK_SOFT_TIME_LIMIT).
CONSUMER_REPLAY_TASK_BUDGET_S = env.float("CONSUMER_REPLAY_TASK_BUDGET_S", default=120.0)
# A background replay whose task started on it and is still `replaying` this long after (no replay holding
# it) lost its worker: beat re-queues it, counting a failed replay, so the replay cap ends it. Keep it above
# CELERY_TASK_TIME_LIMIT: no task runs longer.
CONSUMER_REPLAY_STALE_MINUTES = env.int("CONSUMER_REPLAY_STALE_MINUTES", default=15)
# One never started this long after it was queued lost its task message (a purged Celery broker): beat queues
# it again, counting nothing. A task merely waiting in a long queue is left alone until then.
CONSUMER_REPLAY_LOST_HOURS = env.float("CONSUMER_REPLAY_LOST_HOURS", default=6.0)
# Keep inbox rows longer than a topic can ever be re-read (Kafka retention), or an old event could apply twice.
CONSUMER_INBOX_RETENTION_DAYS = env.int("CONSUMER_INBOX_RETENTION_DAYS", default=14)
CONSUMER_STATS_INTERVAL_S = env.float("CONSUMER_STATS_INTERVAL_S", default=60.0)

# --- Observability (docs/operations.md) -------------------------------------------------
# Each worker process serves its own metrics on this port (0: off). Several relays or consumers on one host
# need a port each: set the variable per process.
RELAY_METRICS_PORT = env.int("RELAY_METRICS_PORT", default=0)
CONSUMER_METRICS_PORT = env.int("CONSUMER_METRICS_PORT", default=0)
CELERY_METRICS_PORT = env.int("CELERY_METRICS_PORT", default=0)
# Loopback by default: the endpoints have no authentication. Set e.g. 0.0.0.0 only where the port is reachable
# from the scraper alone (a cluster network, a firewall); docs/operations.md, "Where the metrics are".
WORKER_METRICS_ADDR = env("WORKER_METRICS_ADDR", default="127.0.0.1")
# The web's /metrics answers a matching "Authorization: Bearer <METRICS_TOKEN>", a client address (see
# TRUSTED_PROXY_NETWORKS) in METRICS_ALLOWED_NETWORKS, or a signed-in user with common.view_flow_dashboard;
# nobody else.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
# Workers write a heartbeat at most this often; one silent for HEARTBEAT_STALE_SECONDS is flagged.
HEARTBEAT_INTERVAL_S = env.float("HEARTBEAT_INTERVAL_S", default=5.0)
HEARTBEAT_STALE_SECONDS = env.float("HEARTBEAT_STALE_SECONDS", default=60.0)
HEARTBEAT_RETENTION_HOURS = env.int("HEARTBEAT_RETENTION_HOURS", default=48)
# How often a consumer asks the broker for its partitions' watermarks and committed offsets (the lag).
CONSUMER_LAG_INTERVAL_S = env.float("CONSUMER_LAG_INTERVAL_S", default=15.0)
# Lag measured from outside the consumers: Celery beat reads every group's committed offsets and the partitions'
# end offsets from the broker this often (the web's /metrics does too, when scraped). A group with lag whose
# committed offsets have not moved for CONSUMER_LAG_STALL_SECONDS is stalled: dashboard, /metrics, /readyz.
CONSUMER_LAG_SAMPLE_INTERVAL_S = env.float("CONSUMER_LAG_SAMPLE_INTERVAL_S", default=5.0)
CONSUMER_LAG_STALL_SECONDS = env.float("CONSUMER_LAG_STALL_SECONDS", default=20.0)
# A consumer that sees partitions of its group with lag, no live owner and no progress for this long (or its own
# partitions with lag feeding it nothing this long) leaves the
# group and joins again (apps.consumers.watchdog); 0 turns that off. Keep it above HEARTBEAT_STALE_SECONDS plus
# a rebalance, so a killed member's partitions are not mistaken for a wedged group.
CONSUMER_UNOWNED_LAG_RESTART_S = env.float("CONSUMER_UNOWNED_LAG_RESTART_S", default=120.0)
# ...and stays out of the group a random 0..this many seconds first, so members that left together come back
# apart: one forms the group alone instead of the same out-of-phase join/sync cycle starting again.
CONSUMER_REJOIN_JITTER_S = env.float("CONSUMER_REJOIN_JITTER_S", default=30.0)
# The event-flow dashboard fetches its sections again this often (seconds), in place.
FLOW_DASHBOARD_REFRESH_S = env.int("FLOW_DASHBOARD_REFRESH_S", default=5)
# The dashboard's charts: a sample of the flow every minute (Celery beat), kept this long.
FLOW_SAMPLE_RETENTION_HOURS = env.int("FLOW_SAMPLE_RETENTION_HOURS", default=48)

# --- Routing ------------------------------------------------------------------------
ROUTING_MAX_STOPS = env.int("ROUTING_MAX_STOPS", default=50)
ROUTING_DWELL_MINUTES = env.int("ROUTING_DWELL_MINUTES", default=15)
# Map tiles behind a route's admin map. The browser fetches the tiles around a route's stops from this server, so
# the tile provider (by default OpenStreetMap's, a third party) learns where the deliveries go and who looks.
# "none" (or empty): no tiles, the map shows depot, stops and path on a plain ground; or a tile server of your own.
# The tile server's origin is added to the CSP's img-src below.
ROUTE_MAP_TILE_URL = env("ROUTE_MAP_TILE_URL", default="https://tile.openstreetmap.org/{z}/{x}/{y}.png")
if ROUTE_MAP_TILE_URL.strip().lower() in ("", "none"):
    ROUTE_MAP_TILE_URL = ""
ROUTE_MAP_TILE_ATTRIBUTION = env("ROUTE_MAP_TILE_ATTRIBUTION", default="© OpenStreetMap contributors")
if ROUTE_MAP_TILE_URL:
    _tiles = urlsplit(ROUTE_MAP_TILE_URL)
    if _tiles.scheme not in ("https", "http") or not _tiles.netloc:
        raise environ.ImproperlyConfigured(f"ROUTE_MAP_TILE_URL is no http(s) URL (or 'none'): {ROUTE_MAP_TILE_URL!r}")
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"].append(f"{_tiles.scheme}://{_tiles.netloc}")

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
CELERY_BEAT_SCHEDULE["consumers-requeue-stale-replays"] = {
    "task": "apps.consumers.tasks.requeue_stale_replays", "schedule": 5 * 60,
}
# A sweep that could not run in its interval is dropped, not stacked behind the next one.
CELERY_BEAT_SCHEDULE["consumers-retry-due"] = {
    "task": "apps.consumers.tasks.retry_due_dead_letters", "schedule": CONSUMER_AUTO_RETRY_SWEEP_S,
    "options": {"expires": CONSUMER_AUTO_RETRY_SWEEP_S},
}
# apps.ops.tasks.sample_flow, registered under the name it had in apps.common so queued messages still run.
CELERY_BEAT_SCHEDULE["common-sample-flow"] = {
    "task": "apps.common.tasks.sample_flow", "schedule": 60, "options": {"expires": 60},
}
CELERY_BEAT_SCHEDULE["ops-sample-consumer-lag"] = {
    "task": "apps.ops.tasks.sample_consumer_lag", "schedule": CONSUMER_LAG_SAMPLE_INTERVAL_S,
    "options": {"expires": CONSUMER_LAG_SAMPLE_INTERVAL_S},
}
CELERY_BEAT_SCHEDULE["common-prune-heartbeats"] = {"task": "apps.common.tasks.prune_heartbeats", "schedule": 3600}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Invoicing -------------------------------------------------------------------------
# The issuer printed in every invoice header.
INVOICING_ISSUER = {
    "name": env("INVOICING_ISSUER_NAME", default="LogiFlow Logistics Ltd."),
    "address": env("INVOICING_ISSUER_ADDRESS", default="1 Harbour Road\n34000 Istanbul, Turkey"),
    "vat_id": env("INVOICING_ISSUER_VAT_ID", default="TR0000000000"),
    "payment_note": env("INVOICING_PAYMENT_NOTE", default="Please quote the invoice number with your payment."),
}
# Payment details printed on invoices (not on credit notes); an empty value is left out.
INVOICING_BANK_NAME = env("INVOICING_BANK_NAME", default="")
INVOICING_IBAN = env("INVOICING_IBAN", default="")
# Render attempts per PDF version, counted before each render, so a renderer that crashes its worker ends `failed`.
INVOICING_PDF_MAX_ATTEMPTS = env.int("INVOICING_PDF_MAX_ATTEMPTS", default=10)
# A PDF still pending this long after issue lost its task (broker down at commit); beat queues it again.
INVOICING_PDF_STALE_MINUTES = env.int("INVOICING_PDF_STALE_MINUTES", default=15)
CELERY_BEAT_SCHEDULE["invoicing-requeue-stale-pdfs"] = {
    "task": "apps.invoicing.tasks.requeue_stale_pdfs", "schedule": 5 * 60,
}
# `make chaos` only: every PDF render leaks this many MB, so Celery must recycle the renderer. 0 = off.
LOGIFLOW_CHAOS_PDF_LEAK_MB = env.int("LOGIFLOW_CHAOS_PDF_LEAK_MB", default=0)

# LOG_FORMAT=json: one JSON object per line with trace_id/span_id and the handled event's event_id (apps.common.logs).
LOG_FORMAT = env("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise environ.ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
# A Celery worker replaces the root logger's handlers with its own format unless told not to: JSON lines must
# stay JSON there too (plain keeps Celery's format, which names the task in each line).
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "apps.common.logs.JsonFormatter"},
    },
    "filters": {
        "skip_error_responses": {"()": "apps.common.logs.SkipErrorResponses"},
        # Error text and tracebacks without the values they quote (a customer's name): docs/architecture.md.
        "redact_errors": {"()": "apps.common.logs.RedactErrors"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact_errors"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's defaults give `django` its own console handler under DEBUG, on top of the root's: every 4xx
        # line and 5xx traceback came out twice. One handler, the root's.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # runserver's access log, through the root; failed requests are left to `django.request` (one line each).
        "django.server": {"handlers": [], "filters": ["skip_error_responses"], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "INFO"},
        # WeasyPrint's font subsetting logs every table it touches at INFO.
        "fontTools": {"level": "WARNING"},
        # WeasyPrint logs every render's steps ("Step 1 - Fetching and parsing HTML") at INFO.
        "weasyprint": {"level": "WARNING"},
        # django-axes logs every successful login and clean-up at INFO; lockouts are WARNING.
        "axes": {"level": "WARNING"},
    },
}
