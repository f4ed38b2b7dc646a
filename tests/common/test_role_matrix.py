"""Least privilege, discovered: every API route and method, every model admin and admin action, for every role.

The routes come from the URL conf and the admins from the admin site, so a new endpoint, model admin or action
without a rule here fails `test_every_*_has_a_rule` until someone decides who may use it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

ROLES = ("anonymous", "nogroup", "dispatcher", "finance", "operations")
ANYONE = set(ROLES)
SIGNED_IN = ANYONE - {"anonymous"}
DISPATCHER, FINANCE, OPERATIONS = {"dispatcher"}, {"finance"}, {"operations"}
MISSING = 999_999  # detail URLs point at no row: a permitted role gets 404, a refused one 401/403 first

# (URL name, method) -> the roles that get past authentication and permission checks.
API_RULES: dict[tuple[str, str], set[str]] = {
    ("api-token", "POST"): ANYONE,
    ("api-logout", "POST"): SIGNED_IN,
    ("api-logout-all", "POST"): SIGNED_IN,
    **{(f"{name}-list", method): DISPATCHER for name in ("depot", "truck", "customer", "route")
       for method in ("GET", "POST")},
    **{(f"{name}-detail", method): DISPATCHER for name in ("depot", "truck", "customer")
       for method in ("GET", "PUT", "PATCH")},
    ("route-detail", "GET"): DISPATCHER,
    **{(f"route-{action}", "POST"): DISPATCHER for action in ("cancel", "complete", "dispatch", "recalculate")},
    ("invoice-list", "GET"): FINANCE,
    ("invoice-detail", "GET"): FINANCE,
    ("invoice-pdf", "GET"): FINANCE,
    ("billing-account-list", "GET"): FINANCE,
    ("billing-account-list", "POST"): FINANCE,
    ("billing-account-detail", "GET"): FINANCE,
    ("billing-account-detail", "PATCH"): FINANCE,
    ("dead-letter-list", "GET"): FINANCE | OPERATIONS,
    ("dead-letter-detail", "GET"): FINANCE | OPERATIONS,
    ("dead-letter-replay", "POST"): OPERATIONS,
    ("dead-letter-discard", "POST"): OPERATIONS,
    ("dead-letter-discard-many", "POST"): OPERATIONS,
    ("dead-letter-edit", "POST"): OPERATIONS,
    ("dead-letter-edit-list", "GET"): FINANCE | OPERATIONS,
    ("dead-letter-edit-approve", "POST"): FINANCE,  # four eyes: finance approves what operations edited
    ("dead-letter-edit-reject", "POST"): FINANCE,
    ("schema", "GET"): SIGNED_IN,
    ("swagger-ui", "GET"): SIGNED_IN,
    # The event catalogue: the OpenAPI schema's permissions.
    ("asyncapi", "GET"): SIGNED_IN,
    ("asyncapi-ui", "GET"): SIGNED_IN,
    ("home", "GET"): ANYONE,  # a redirect to the admin, which asks for a login
    ("favicon", "GET"): ANYONE,
    ("health-live", "GET"): ANYONE,
    ("health-ready", "GET"): ANYONE,
    # Prometheus uses METRICS_TOKEN or METRICS_ALLOWED_NETWORKS (neither is set here); people need the permission.
    ("metrics", "GET"): OPERATIONS,
}

# Admin pages that are no model's changelist (URL name) -> roles that may open them (superusers always may).
ADMIN_PAGE_RULES: dict[str, set[str]] = {
    "admin:common_flow_dashboard": OPERATIONS,
    "admin:consumers_deadletter_edit_and_replay": OPERATIONS,
    "admin:consumers_deadletter_replay_one": OPERATIONS,
    "admin:consumers_deadletter_discard_one": OPERATIONS,
}

# Model admin -> roles that may open its list; (model admin, action) -> roles offered the action.
ADMIN_VIEW_RULES: dict[str, set[str]] = {
    "auth.Group": set(), "auth.User": set(), "knox.AuthToken": set(),
    "axes.AccessAttempt": set(), "axes.AccessLog": set(), "axes.AccessFailureLog": set(),
    "outbox.OutboxEvent": DISPATCHER | OPERATIONS, "outbox.RelayProblem": OPERATIONS,
    "consumers.DeadLetter": FINANCE | OPERATIONS,
    "consumers.DeadLetterEdit": FINANCE | OPERATIONS,
    "routing.Depot": DISPATCHER, "routing.Truck": DISPATCHER, "routing.Customer": DISPATCHER,
    "routing.Route": DISPATCHER,
    "invoicing.Invoice": FINANCE, "invoicing.BillingAccount": FINANCE, "invoicing.KnownCustomer": FINANCE,
    "common.Heartbeat": OPERATIONS,
}
ADMIN_ACTION_RULES: dict[tuple[str, str], set[str]] = {
    ("axes.AccessAttempt", "cleanup_expired_attempts"): set(),
    ("outbox.OutboxEvent", "resend_selected"): OPERATIONS,
    ("consumers.DeadLetter", "replay_selected"): OPERATIONS,
    ("consumers.DeadLetter", "replay_failure_groups"): OPERATIONS,
    ("consumers.DeadLetter", "discard_selected"): OPERATIONS,
    ("consumers.DeadLetterEdit", "approve_selected"): FINANCE,
    ("consumers.DeadLetterEdit", "reject_selected"): FINANCE,
    **{("routing.Route", action): DISPATCHER
       for action in ("recalculate_routes", "dispatch_routes", "complete_routes", "cancel_routes")},
    ("invoicing.Invoice", "rerender_pdf"): FINANCE,
    ("invoicing.Invoice", "mark_sent"): FINANCE,
}
# (model admin, autocomplete field) -> roles whose search answers (the admin's site-wide autocomplete view checks
# the view permission of the searched model's admin).
ADMIN_AUTOCOMPLETE_RULES: dict[tuple[str, str], set[str]] = {
    ("invoicing.BillingAccount", "customer"): FINANCE,
}


def _api_patterns() -> Iterator[tuple[str, URLPattern]]:
    def walk(patterns: list, prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif pattern.name and not (prefix + str(pattern.pattern)).startswith("admin/"):
                yield prefix + str(pattern.pattern), pattern

    yield from walk(get_resolver().url_patterns, "")


def _methods(pattern: URLPattern) -> set[str]:
    callback = pattern.callback
    if getattr(callback, "actions", None):  # a viewset route: the methods it maps
        return {method.upper() for method in callback.actions}
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:  # a function view (health probes)
        return {"GET"}
    return {m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)}


def discovered_api() -> set[tuple[str, str]]:
    # HEAD mirrors GET (DRF adds it to a viewset's actions at its first request).
    return {(pattern.name, method) for _, pattern in _api_patterns() for method in _methods(pattern) if method != "HEAD"}


def _url(name: str) -> str:
    pattern = dict((p.name, p) for _, p in _api_patterns())[name]
    keys = list(pattern.pattern.regex.groupindex)
    return reverse(name, kwargs=dict.fromkeys(keys, MISSING))


@pytest.fixture
def role_users(db: None) -> dict[str, User | None]:
    users: dict[str, User | None] = {"anonymous": None}
    for role in ROLES[1:]:
        user = User.objects.create_user(f"{role}-user", password="pw", is_staff=True)
        if role != "nogroup":
            user.groups.add(Group.objects.get(name=role))
        users[role] = user
    return users


def test_every_api_route_and_method_has_a_rule() -> None:
    assert discovered_api() == set(API_RULES), "decide who may use the new endpoint, then add it to API_RULES"


def test_every_model_admin_and_action_has_a_rule() -> None:
    request = RequestFactory().get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    admins = {model._meta.label: model_admin for model, model_admin in admin.site._registry.items()}
    actions = {(label, name) for label, model_admin in admins.items()
               for name in model_admin.get_actions(request) if name != "delete_selected"}
    assert set(admins) == set(ADMIN_VIEW_RULES)
    assert actions == set(ADMIN_ACTION_RULES)


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "method"), sorted(API_RULES))
def test_api_route_admits_exactly_its_roles(name: str, method: str, role_users: dict[str, User | None]) -> None:
    url = _url(name)
    for role, user in role_users.items():
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        status = getattr(client, method.lower())(url, {}, format="json").status_code
        if role in API_RULES[(name, method)]:
            assert status not in (401, 403), f"{role} refused {method} {url}: {status}"
        else:
            expected = (401,) if role == "anonymous" else (403,)
            assert status in expected, f"{role} {method} {url}: {status}, expected {expected}"


@pytest.mark.django_db
@pytest.mark.parametrize("label", sorted(ADMIN_VIEW_RULES))
def test_model_admin_opens_for_exactly_its_roles(label: str, role_users: dict[str, User | None]) -> None:
    app_label, model = label.lower().split(".")
    url = reverse(f"admin:{app_label}_{model}_changelist")
    for role, user in role_users.items():
        browser = Client()
        if user is not None:
            browser.force_login(user)
        status = browser.get(url).status_code
        if role == "anonymous":
            assert status == 302, f"anonymous got {status} on {url}"  # to the login page
        elif role in ADMIN_VIEW_RULES[label]:
            assert status == 200, f"{role} got {status} on {url}"
        else:
            assert status == 403, f"{role} got {status} on {url}"


@pytest.mark.django_db
@pytest.mark.parametrize(("label", "action"), sorted(ADMIN_ACTION_RULES))
def test_admin_action_is_offered_to_exactly_its_roles(
    label: str, action: str, role_users: dict[str, User | None]
) -> None:
    model_admin = next(ma for model, ma in admin.site._registry.items() if model._meta.label == label)
    for role, user in role_users.items():
        if user is None:
            continue
        request = RequestFactory().get("/admin/")
        request.user = user
        # An action counts only where the user can open the list it is offered on.
        offered = model_admin.has_view_or_change_permission(request) and action in model_admin.get_actions(request)
        assert offered == (role in ADMIN_ACTION_RULES[(label, action)]), f"{role}: {action} offered={offered}"


def test_every_admin_autocomplete_has_a_rule() -> None:
    request = RequestFactory().get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    discovered = {(model._meta.label, field) for model, model_admin in admin.site._registry.items()
                  for field in model_admin.get_autocomplete_fields(request)}
    assert discovered == set(ADMIN_AUTOCOMPLETE_RULES)


@pytest.mark.django_db
@pytest.mark.parametrize(("label", "field"), sorted(ADMIN_AUTOCOMPLETE_RULES))
def test_admin_autocomplete_answers_exactly_its_roles(
    label: str, field: str, role_users: dict[str, User | None]
) -> None:
    app_label, model = label.lower().split(".")
    query = {"app_label": app_label, "model_name": model, "field_name": field, "term": "a"}
    for role, user in role_users.items():
        browser = Client()
        if user is not None:
            browser.force_login(user)
        status = browser.get(reverse("admin:autocomplete"), query).status_code
        if role == "anonymous":
            assert status == 302, f"anonymous got {status}"
        elif role in ADMIN_AUTOCOMPLETE_RULES[(label, field)]:
            assert status == 200, f"{role} got {status}"
        else:
            assert status == 403, f"{role} got {status}"


def test_every_custom_admin_page_has_a_rule() -> None:
    """Admin URLs a model admin adds beside its own views (dashboards) need a rule here too."""
    standard = ("_changelist", "_add", "_history", "_delete", "_change", "_autocomplete")
    names = {f"admin:{p.name}" for model_admin in admin.site._registry.values()
             for p in model_admin.get_urls() if getattr(p, "name", None) and not p.name.endswith(standard)}
    assert names == set(ADMIN_PAGE_RULES)


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ADMIN_PAGE_RULES))
def test_admin_page_opens_for_exactly_its_roles(name: str, role_users: dict[str, User | None]) -> None:
    pattern = next(p for model_admin in admin.site._registry.values() for p in model_admin.get_urls()
                   if f"admin:{getattr(p, 'name', '')}" == name)
    url = reverse(name, kwargs=dict.fromkeys(pattern.pattern.regex.groupindex, MISSING))
    for role, user in role_users.items():
        browser = Client()
        if user is not None:
            browser.force_login(user)
        status = browser.get(url).status_code
        if role == "anonymous":
            assert status == 302, f"anonymous got {status} on {url}"
        elif role in ADMIN_PAGE_RULES[name]:
            assert status in (200, 404), f"{role} got {status} on {url}"  # 404: a page about an object, MISSING
        else:
            assert status == 403, f"{role} got {status} on {url}"
