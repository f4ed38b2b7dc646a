"""`make test`: real PostgreSQL (embedded unless DATABASE_URL is set) and a real Kafka-protocol broker
(Tansu started by the test session unless given)."""

from logiflow import embedded_postgres

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, database_config, env

SECRET_KEY = "test-only-key"
# A throwaway embedded cluster per test session; worker processes started by tests get its URL.
DATABASE_URL = env("DATABASE_URL", default="") or embedded_postgres.throwaway_database_url()
DATABASES = {"default": database_config(DATABASE_URL)}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=6000)
OUTBOX_RELAY_POLL_INTERVAL_S = 0.2
# Short enough that broker-outage tests see a failed delivery within seconds.
OUTBOX_RELAY_DELIVERY_TIMEOUT_S = env.float("OUTBOX_RELAY_DELIVERY_TIMEOUT_S", default=10.0)
OUTBOX_RELAY_RETRY_MAX_S = env.float("OUTBOX_RELAY_RETRY_MAX_S", default=2.0)

# The development stack (its `embedded_broker` command), and for consumers a test-only app with its own event type
# and topic; short backoff so retry tests are quick.
INSTALLED_APPS = [*INSTALLED_APPS, "apps.devstack", "tests.consumers.testapp"]
TESTAPP_EVENTS_TOPIC = env("TESTAPP_EVENTS_TOPIC", default="testing.events")
CONSUMER_MAX_ATTEMPTS = env.int("CONSUMER_MAX_ATTEMPTS", default=3)
CONSUMER_RETRY_BACKOFF_INITIAL_S = env.float("CONSUMER_RETRY_BACKOFF_INITIAL_S", default=0.05)
CONSUMER_RETRY_BACKOFF_MAX_S = env.float("CONSUMER_RETRY_BACKOFF_MAX_S", default=0.2)
CONSUMER_RETRY_BATCH_BUDGET_S = env.float("CONSUMER_RETRY_BATCH_BUDGET_S", default=10.0)
CONSUMER_POLL_TIMEOUT_S = 0.2
