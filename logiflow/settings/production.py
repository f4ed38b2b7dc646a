"""Production: secrets and endpoints have no defaults; a missing one stops the process at start."""

from .base import *  # noqa: F403
from .base import database_config, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
DATABASE_URL = env("DATABASE_URL")
DATABASES = {"default": database_config(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
KAFKA_BOOTSTRAP_SERVERS = env("KAFKA_BOOTSTRAP_SERVERS")
# Stated, never assumed: PLAINTEXT lets anyone who reaches the brokers write the event topics. Under SASL each
# process needs its own kind's KAFKA_<KIND>_USERNAME/PASSWORD (no defaults; a missing one stops its Kafka client).
KAFKA_SECURITY_PROTOCOL = env("KAFKA_SECURITY_PROTOCOL")
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
CELERY_BROKER_TRANSPORT_OPTIONS = {}

# HTTPS by default; each switch has a variable for a deployment whose TLS ends at a proxy that already does it.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Probes talk plain HTTP to the container; a redirect would fail them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=True)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Trusted only when configured (e.g. "HTTP_X_FORWARDED_PROTO,https"): a client reaching gunicorn directly could
# otherwise claim HTTPS with a header.
_proxy_ssl_header = [part for part in env.list("DJANGO_SECURE_PROXY_SSL_HEADER", default=[]) if part]
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) if _proxy_ssl_header else None
