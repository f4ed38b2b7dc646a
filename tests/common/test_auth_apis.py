"""The token endpoint (apps/common/auth_apis.py) on input the fuzz test found."""

from __future__ import annotations

import pytest
from axes.models import AccessLog
from django.contrib.auth.models import User
from knox.models import AuthToken
from pytest_django.fixtures import Settings
from rest_framework.response import Response
from rest_framework.test import APIClient

TOKEN_URL = "/api/v1/auth/token/"


@pytest.mark.django_db
def test_a_username_longer_than_any_user_can_have_is_a_400_not_a_500() -> None:
    # django-axes records the failed login with the username in a 255-character column.
    response = APIClient().post(TOKEN_URL, {"username": "u" * 300, "password": "whatever"}, format="json")
    assert response.status_code == 400
    assert "username" in response.json()


@pytest.mark.django_db
def test_a_username_of_the_longest_allowed_length_still_logs_in() -> None:
    longest = "u" * User._meta.get_field("username").max_length
    User.objects.create_user(longest, password="pw-long-123")
    response = APIClient().post(TOKEN_URL, {"username": longest, "password": "pw-long-123"}, format="json")
    assert response.status_code == 200, response.content


def _login(client: APIClient, username: str = "ayse", password: str = "pw-ayse-123") -> Response:
    return client.post(TOKEN_URL, {"username": username, "password": password}, format="json")


@pytest.mark.django_db
def test_a_user_holding_the_token_limit_gets_no_new_token_until_one_ends(settings: Settings) -> None:
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_LIMIT_PER_USER": 2}
    User.objects.create_user("ayse", password="pw-ayse-123")
    client = APIClient()

    answers = [_login(client) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 403]
    assert "2 API tokens" in answers[2].json()["detail"]
    assert AuthToken.objects.filter(user__username="ayse").count() == 2
    client.credentials(HTTP_AUTHORIZATION=f"Token {answers[0].json()['token']}")
    assert client.post("/api/v1/auth/logout/").status_code == 204
    client.credentials()
    assert _login(client).status_code == 200


@pytest.mark.django_db
def test_an_api_login_sets_last_login_and_leaves_an_access_log() -> None:
    user = User.objects.create_user("ayse", password="pw-ayse-123")
    assert user.last_login is None

    assert _login(APIClient()).status_code == 200

    user.refresh_from_db()
    assert user.last_login is not None
    assert AccessLog.objects.filter(username="ayse").count() == 1
