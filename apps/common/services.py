"""Shared writes: `model_update` for every app's services; a worker's heartbeat (removed on a clean stop, pruned
when old); an API token for a user who just proved their password."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in
from django.db import models, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import knox_settings

from apps.common.errors import ApplicationError
from apps.common.models import Heartbeat

M = TypeVar("M", bound=models.Model)


def model_update(
    *, instance: M, fields: Sequence[str], data: Mapping[str, Any], also: Mapping[str, Any] | None = None,
) -> tuple[M, bool]:
    """The one way services change a row: apply the entries of `data` named in `fields` that differ; when any
    did, also set `also` (e.g. a revision), validate the whole row and save only the changed columns (with its
    `auto_now` ones). Returns the instance and whether it changed. Call it inside the service's transaction."""
    changed = [name for name in fields if name in data and getattr(instance, name) != data[name]]
    if not changed:
        return instance, False
    for name in changed:
        setattr(instance, name, data[name])
    for name, value in (also or {}).items():
        setattr(instance, name, value)
    instance.full_clean()
    stamped = [f.name for f in instance._meta.concrete_fields if getattr(f, "auto_now", False)]
    instance.save(update_fields=[*changed, *(also or {}), *stamped])
    return instance, True


def heartbeat_beat(
    *, kind: str, group: str = "", started_at: datetime, last_batch_at: datetime | None,
    partitions: list[dict[str, Any]] | None = None,
) -> None:
    """Record this process's heartbeat (one upsert, autocommit)."""
    Heartbeat.objects.update_or_create(
        kind=kind, group=group, host=socket.gethostname(), pid=os.getpid(),
        defaults={
            "started_at": started_at, "beat_at": timezone.now(), "last_batch_at": last_batch_at,
            "partitions": partitions or [],
        },
    )


def heartbeat_remove(*, kind: str, group: str = "") -> None:
    """A clean stop: the process is gone on purpose, it must not show as silent."""
    Heartbeat.objects.filter(kind=kind, group=group, host=socket.gethostname(), pid=os.getpid()).delete()


def heartbeats_prune(*, older_than: timedelta | None = None) -> int:
    """Delete heartbeats silent for longer than HEARTBEAT_RETENTION_HOURS (crashed or moved processes)."""
    older_than = older_than or timedelta(hours=settings.HEARTBEAT_RETENTION_HOURS)
    deleted, _ = Heartbeat.objects.filter(beat_at__lt=timezone.now() - older_than).delete()
    return deleted



class TokenLimitReached(ApplicationError):
    """The user holds TOKEN_LIMIT_PER_USER live API tokens: one must be logged out (or expire) first."""


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, request: HttpRequest) -> tuple[AuthToken, str]:
    """A new API token (the row, the token text) for `user`, who just proved their password, while they hold fewer
    than TOKEN_LIMIT_PER_USER live tokens. Sends `user_logged_in` as a session login does: `last_login` and
    django-axes' access log record API logins too."""
    limit = knox_settings.TOKEN_LIMIT_PER_USER
    if limit is not None:
        # The user's row is the lock: two logins at once cannot both pass the count.
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
        live = AuthToken.objects.filter(Q(expiry__gt=timezone.now()) | Q(expiry__isnull=True), user=user).count()
        if live >= limit:
            raise TokenLimitReached(
                f"you hold {limit} API tokens, the most a user may: log one out (POST /api/v1/auth/logout/ with "
                "it, or /api/v1/auth/logout-all/) or wait until one expires"
            )
    created = AuthToken.objects.create(user=user)
    user_logged_in.send(sender=type(user), request=request, user=user)
    return created
