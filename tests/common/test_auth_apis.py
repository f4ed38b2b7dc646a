"""The token endpoint (apps/common/auth_apis.py) on input the fuzz test found."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
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
