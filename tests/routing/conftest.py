"""Role users and API clients for routing's tests."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient

DISPATCHER_PERMISSIONS = importlib.import_module("apps.routing.migrations.0002_dispatcher_group").DISPATCHER_PERMISSIONS


@pytest.fixture
def dispatcher_group(db: None) -> Group:
    """The group the data migration created; rebuilt from the migration's list after a transactional test's flush."""
    group, created = Group.objects.get_or_create(name="dispatcher")
    if created:
        for name in DISPATCHER_PERMISSIONS:
            app_label, codename = name.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


@pytest.fixture
def dispatcher(dispatcher_group: Group) -> User:
    user = User.objects.create_user("dispatcher", password="pw", is_staff=True)
    user.groups.add(dispatcher_group)
    return user


@pytest.fixture
def finance_user(db: None) -> User:
    """A back-office user from finance: staff, but with none of routing's permissions."""
    user = User.objects.create_user("finance", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="finance")[0])
    return user


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=user)[1]}")
    return client


@pytest.fixture
def dispatcher_api(dispatcher: User) -> APIClient:
    return token_client(dispatcher)


@pytest.fixture
def finance_api(finance_user: User) -> APIClient:
    return token_client(finance_user)


@pytest.fixture
def failing_outbox_insert(transactional_db: None) -> Iterator[None]:
    """A real database error on the last write of the service (the outbox row), removed afterwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION routing_test_fail() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'forced failure'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER routing_test_fail BEFORE INSERT ON outbox_outboxevent "
            "FOR EACH ROW EXECUTE FUNCTION routing_test_fail()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER routing_test_fail ON outbox_outboxevent")
        cursor.execute("DROP FUNCTION routing_test_fail()")
