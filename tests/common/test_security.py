"""Secure by default: entry points, tokens, throttling, lockout, health probes, media, production settings, PDF fetcher."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client
from django.urls import Resolver404, clear_url_caches, resolve
from knox.models import AuthToken
from rest_framework.test import APIClient

from apps.invoicing.pdf import ASSETS_DIR, BundledAssetsOnly, bundled_asset

ROOT = Path(settings.BASE_DIR)
TOKEN_URL = "/api/v1/auth/token/"
# The documented production environment (README): every secret and endpoint given, nothing else.
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "logiflow.settings.production",
    "DJANGO_SECRET_KEY": "k" * 20 + "an-unpredictable-production-secret-0123456789",
    "DJANGO_ALLOWED_HOSTS": "logiflow.example.com",
    "DATABASE_URL": "postgres://logiflow:secret@db.example.com:5432/logiflow",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9092",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "CELERY_BROKER_URL": "redis://redis.example.com:6379/0",
}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("module", ["logiflow.wsgi", "logiflow.asgi", "logiflow.celery"])
def test_server_entry_points_without_settings_refuse_to_start_instead_of_running_local_settings(module: str) -> None:
    result = _python(f"import {module}; from django.conf import settings; print(settings.DEBUG)", {})
    assert result.returncode != 0, result.stdout
    assert "DJANGO_SECRET_KEY" in result.stderr  # production settings, which demand their secrets


def test_check_deploy_with_the_documented_production_environment_has_no_warnings() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
        env={**os.environ, **PRODUCTION_ENV}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_does_not_assume_an_unauthenticated_kafka() -> None:
    """A deployment says whether its Kafka authenticates: PLAINTEXT (anyone on the network may write the event
    topics) is never what it gets by leaving the variable out."""
    code = "from django.conf import settings; print(settings.KAFKA_SECURITY_PROTOCOL)"
    without = _python(code, {k: v for k, v in PRODUCTION_ENV.items() if k != "KAFKA_SECURITY_PROTOCOL"})
    assert without.returncode != 0 and "KAFKA_SECURITY_PROTOCOL" in without.stderr, without.stdout
    assert _python(code, PRODUCTION_ENV).stdout.strip() == "SASL_SSL"


def test_the_proxy_ssl_header_is_trusted_only_when_configured() -> None:
    code = "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
    assert _python(code, PRODUCTION_ENV).stdout.strip() == "None"
    configured = _python(code, {**PRODUCTION_ENV, "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https"})
    assert configured.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"


@pytest.mark.django_db
def test_api_tokens_are_stored_hashed_expire_and_log_out() -> None:
    User.objects.create_user("ana", password="pw-ana-123")
    response = APIClient().post(TOKEN_URL, {"username": "ana", "password": "pw-ana-123"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert response.json()["expiry"]
    stored = AuthToken.objects.get()
    assert token not in {stored.digest, stored.token_key} and stored.expiry is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/routes/").status_code in (200, 403)  # authenticated (403: no routing role)
    assert client.post("/api/v1/auth/logout/").status_code == 204
    assert client.get("/api/v1/routes/").status_code == 401


@pytest.mark.django_db
def test_repeated_wrong_passwords_on_the_token_endpoint_are_throttled_with_retry_after() -> None:
    User.objects.create_user("ana", password="pw-ana-123")
    client = APIClient()
    statuses = [client.post(TOKEN_URL, {"username": "ana", "password": f"wrong{i}"}, format="json").status_code for i in range(30)]
    assert statuses[0] == 401 and 429 in statuses
    throttled = client.post(TOKEN_URL, {"username": "ana", "password": "wrong"}, format="json")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0


@pytest.mark.django_db
def test_admin_login_locks_out_after_repeated_failures() -> None:
    User.objects.create_superuser("root", "root@example.com", "right-password-1")
    browser = Client()
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        browser.post("/admin/login/", {"username": "root", "password": f"wrong-{attempt}"})
    locked = browser.post("/admin/login/", {"username": "root", "password": "right-password-1"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in browser.session


def test_media_files_are_never_served_by_django_even_with_debug_on(settings: object) -> None:
    import importlib

    import logiflow.urls

    settings.DEBUG = True  # type: ignore[attr-defined]  (the URL conf is built at import: rebuild it under DEBUG)
    try:
        with pytest.raises(Resolver404):
            resolve("/media/invoices/2026/LF-2026-000001-v1.pdf", urlconf=importlib.reload(logiflow.urls))
    finally:
        settings.DEBUG = False  # type: ignore[attr-defined]
        importlib.reload(logiflow.urls)
        clear_url_caches()


@pytest.mark.django_db
def test_readyz_names_the_failing_component_without_its_error_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.common import health

    def broken() -> None:
        raise OperationalError('connection to server at "db.internal" (10.0.0.5), port 5432 failed: user "logiflow"')

    monkeypatch.setitem(health._CHECKS, "database", broken)
    monkeypatch.setattr(settings, "METRICS_TOKEN", "s3cret-token")
    response = Client().get("/readyz", HTTP_AUTHORIZATION="Bearer s3cret-token")
    anonymous = Client().get("/readyz")
    assert response.status_code == anonymous.status_code == 503
    assert response.json() == {"status": "unavailable", "failing": ["database"]}
    assert anonymous.json() == {"status": "unavailable"}


def test_the_pdf_renderer_fetches_bundled_assets_only(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    for url in ["http://127.0.0.1:9/logo.png", outside.as_uri(), "file:///etc/passwd",
                (ASSETS_DIR / ".." / "models.py").as_uri(), "data:text/plain,hi"]:
        assert bundled_asset(url) is None, url
        with pytest.raises(ValueError, match="only its bundled assets"):
            BundledAssetsOnly().fetch(url)
    readme = ASSETS_DIR / "README.md"
    assert bundled_asset(readme.as_uri()) == readme


@pytest.mark.parametrize("value", ["none", "", "None"])
def test_the_route_map_tile_source_can_be_turned_off_and_then_nothing_is_added_to_the_csp(value: str) -> None:
    code = ("from django.conf import settings; "
            "print(repr(settings.ROUTE_MAP_TILE_URL), settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['img-src'])")
    result = _python(code, {**PRODUCTION_ENV, "ROUTE_MAP_TILE_URL": value})
    assert result.stdout.strip() == "'' [\"'self'\", 'data:']", result.stderr


def test_the_route_map_tiles_default_to_openstreetmap_whose_origin_the_csp_allows() -> None:
    code = ("from django.conf import settings; "
            "print(settings.ROUTE_MAP_TILE_URL, settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['img-src'][-1])")
    result = _python(code, PRODUCTION_ENV)
    assert result.stdout.split() == ["https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"]


def test_a_trusted_proxy_network_that_is_no_network_stops_the_start_instead_of_failing_each_request() -> None:
    code = "from django.conf import settings; print(settings.TRUSTED_PROXY_NETWORKS)"
    assert _python(code, {**PRODUCTION_ENV, "TRUSTED_PROXY_NETWORKS": "10.0.0.0/8,fd00::/8"}).returncode == 0
    refused = _python(code, {**PRODUCTION_ENV, "TRUSTED_PROXY_NETWORKS": "10.0.0.0/8,the-proxy"})
    assert refused.returncode != 0 and "TRUSTED_PROXY_NETWORKS" in refused.stderr
