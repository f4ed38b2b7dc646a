"""Which address is the client (apps/common/trust.py): one setting, TRUSTED_PROXY_NETWORKS, for the API throttles,
django-axes and the /metrics guard alike. A client-supplied X-Forwarded-For counts only behind a trusted proxy."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

TOKEN_URL = "/api/v1/auth/token/"
PROXY = "10.0.0.2"


def _wrong_password(client: APIClient, *, forwarded_for: str | None = None, remote: str = "203.0.113.9") -> int:
    headers = {"REMOTE_ADDR": remote}
    if forwarded_for is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client.post(TOKEN_URL, {"username": "ana", "password": "wrong"}, format="json", **headers).status_code


@pytest.mark.django_db
def test_without_a_trusted_proxy_a_spoofed_forwarded_for_does_not_escape_the_login_throttle() -> None:
    User.objects.create_user("ana", password="pw-ana-123")
    client = APIClient()
    statuses = [_wrong_password(client, forwarded_for=f"198.51.100.{i}") for i in range(11)]
    assert 429 not in statuses[:10]
    assert statuses[10] == 429


@pytest.mark.django_db
def test_without_a_trusted_proxy_a_spoofed_forwarded_for_does_not_escape_the_axes_lockout() -> None:
    User.objects.create_user("ana", password="pw-ana-123")
    client = APIClient()
    for i in range(settings.AXES_FAILURE_LIMIT):
        _wrong_password(client, forwarded_for=f"198.51.100.{i}")
    from axes.models import AccessAttempt

    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["203.0.113.9"]


@pytest.mark.django_db
def test_behind_a_trusted_proxy_axes_locks_the_client_out_not_the_proxy(settings: object) -> None:
    settings.TRUSTED_PROXY_NETWORKS = ["10.0.0.0/24"]  # type: ignore[attr-defined]
    User.objects.create_user("ana", password="pw-ana-123")
    attacker = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):  # type: ignore[attr-defined]
        _wrong_password(attacker, forwarded_for="198.51.100.66", remote=PROXY)
    locked = attacker.post(TOKEN_URL, {"username": "ana", "password": "pw-ana-123"}, format="json",
                           REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.66")
    assert locked.status_code in (401, 429)
    ana = APIClient().post(TOKEN_URL, {"username": "ana", "password": "pw-ana-123"}, format="json",
                           REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="192.0.2.7")
    assert ana.status_code == 200, ana.content


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_client_has_its_own_login_throttle(settings: object) -> None:
    settings.TRUSTED_PROXY_NETWORKS = ["10.0.0.0/24"]  # type: ignore[attr-defined]
    User.objects.create_user("ana", password="pw-ana-123")
    client = APIClient()
    # A client-written entry left of what the proxy appended is not trusted: the proxy saw 198.51.100.1.
    statuses = [_wrong_password(client, forwarded_for=f"192.0.2.{i}, 198.51.100.1", remote=PROXY) for i in range(11)]
    assert statuses[10] == 429
    assert _wrong_password(client, forwarded_for="198.51.100.2", remote=PROXY) != 429


@pytest.mark.django_db
def test_the_metrics_guard_checks_the_client_behind_a_trusted_proxy_not_the_proxy(settings: object) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/24"]  # type: ignore[attr-defined]
    settings.TRUSTED_PROXY_NETWORKS = ["10.0.0.2/32"]  # type: ignore[attr-defined]
    assert Client().get("/metrics", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code in (401, 403)
    assert Client().get("/metrics", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="10.0.0.7").status_code == 200


@pytest.mark.django_db
def test_without_a_trusted_proxy_a_spoofed_forwarded_for_does_not_open_metrics(settings: object) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/24"]  # type: ignore[attr-defined]
    response = Client().get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.0.0.7")
    assert response.status_code in (401, 403)


@pytest.mark.parametrize(("remote", "forwarded", "client"), [
    ("203.0.113.9", "10.0.0.7", "203.0.113.9"),  # no trusted proxy in front: the header is the client's say-so
    (PROXY, "198.51.100.1", "198.51.100.1"),
    (PROXY, "192.0.2.1, 198.51.100.1", "198.51.100.1"),  # only the entry the trusted proxy wrote counts
    (PROXY, "198.51.100.1, 10.0.0.3", "198.51.100.1"),  # two trusted proxies
    (PROXY, "not-an-address", PROXY),  # garbage from the proxy: the proxy is all we know
    (PROXY, None, PROXY),
])
def test_client_address_walks_forwarded_for_from_the_right_past_trusted_proxies_only(
    settings: object, remote: str, forwarded: str | None, client: str,
) -> None:
    from django.test import RequestFactory

    from apps.common.trust import client_address

    settings.TRUSTED_PROXY_NETWORKS = ["10.0.0.0/24"]  # type: ignore[attr-defined]
    extra = {"REMOTE_ADDR": remote} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {})
    assert client_address(RequestFactory().get("/", **extra)) == client
