"""What a dead letter's fix (`registry.Fix`) asks of whom, and whether it is done: one small check registered per
fix page (its URL name) by the app that owns the page, so operations read "finance's; done since 10:42 — replay
now" instead of following a link to a refusal.

    @fix_check("admin:invoicing_billingaccount_add", permission="invoicing.add_billingaccount")
    def billing_account_added(query: QueryDict) -> FixDone | None:
        ...  # FixDone(what="the billing account for Ege Foods", since=…), or None while not done
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission
from django.http import QueryDict
from django.urls import Resolver404, resolve

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FixDone:
    """The fix's cause is gone: `what` exists (since `since`, when known)."""

    what: str
    since: datetime | None = None


FixCheck = Callable[[QueryDict], "FixDone | None"]


@dataclass(frozen=True)
class FixKind:
    url_name: str
    permission: str  # "app_label.codename": who may do the fix
    check: FixCheck


_KINDS: dict[str, FixKind] = {}


def fix_check(url_name: str, *, permission: str) -> Callable[[FixCheck], FixCheck]:
    """Register the decorated function as the check of fixes on the page named `url_name`: it gets the link's
    query and answers FixDone or None (not done)."""

    def register(check: FixCheck) -> FixCheck:
        _KINDS[url_name] = FixKind(url_name=url_name, permission=permission, check=check)
        return check

    return register


@dataclass(frozen=True)
class FixStatus:
    """A dead letter's fix as one user sees it."""

    label: str
    url: str
    may_do: bool  # the user holds the permission: show the link
    permission: str = ""  # its name ("Can add billing account"); empty for an unregistered fix page
    roles: tuple[str, ...] = ()  # the role groups holding it
    checked: bool = False  # a check is registered and answered
    done: FixDone | None = None


def fix_status(*, label: str, url: str, user: AbstractBaseUser | AnonymousUser) -> FixStatus:
    """Whose the fix at `url` is and whether it is done; an unregistered page (or a check that fails) says only
    what the link says, as before."""
    split = urlsplit(url)
    try:
        kind = _KINDS.get(resolve(split.path).view_name)
    except Resolver404:
        kind = None
    if kind is None:
        return FixStatus(label=label, url=url, may_do=True)
    app_label, codename = kind.permission.split(".", 1)
    permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    roles = tuple(Group.objects.filter(permissions=permission).order_by("name").values_list("name", flat=True))
    status = FixStatus(label=label, url=url, may_do=user.has_perm(kind.permission),
                       permission=permission.name if permission else kind.permission, roles=roles)
    try:
        done = kind.check(QueryDict(split.query))
    except Exception:  # noqa: BLE001 - a broken check must not take the dead letter's page down with it
        logger.exception("fix check %s failed for %s", kind.url_name, url)
        return status
    return FixStatus(**{**status.__dict__, "checked": True, "done": done})
