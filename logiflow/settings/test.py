"""`make test`: real PostgreSQL and a real Kafka-protocol broker (Tansu started by the test session unless given)."""

from .base import *  # noqa: F403
from .base import database_config, env

SECRET_KEY = "test-only-key"
DATABASES = {"default": database_config(env("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/logiflow"))}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=6000)
OUTBOX_RELAY_POLL_INTERVAL_S = 0.2
# Short enough that broker-outage tests see a failed delivery within seconds.
OUTBOX_RELAY_DELIVERY_TIMEOUT_S = env.float("OUTBOX_RELAY_DELIVERY_TIMEOUT_S", default=10.0)
OUTBOX_RELAY_RETRY_MAX_S = env.float("OUTBOX_RELAY_RETRY_MAX_S", default=2.0)
