"""Pages everyone meets: the site's own 403 and 404 (a login link for whoever is not logged in), JSON errors under
/api/ in every mode including DEBUG (`make run`), a real place behind "View site", and a favicon."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.invoicing.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_path_answers_json_404_also_under_debug(settings: object, debug: bool) -> None:
    settings.DEBUG = debug  # type: ignore[attr-defined]
    response = Client().get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("debug", [False, True])
def test_an_api_refusal_answers_json_also_under_debug(settings: object, debug: bool) -> None:
    settings.DEBUG = debug  # type: ignore[attr-defined]
    anonymous = Client().get("/api/v1/routes/")
    assert anonymous.status_code == 401 and anonymous["Content-Type"] == "application/json"
    client = Client()
    client.force_login(UserFactory())  # no permissions
    refused = client.get("/api/v1/routes/")
    assert refused.status_code == 403 and refused["Content-Type"] == "application/json"


def test_a_page_that_does_not_exist_is_the_sites_own_with_a_login_link_for_the_anonymous() -> None:
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "LogiFlow" in html and "Page not found" in html
    assert 'href="/admin/login/?next=/no-such-page/"' in html


def test_a_refused_page_is_the_sites_own_and_names_who_is_logged_in() -> None:
    client = Client()
    user = UserFactory(role="finance")
    client.force_login(user)
    response = client.get("/admin/routing/route/add/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "LogiFlow" in html and "not allowed" in html and user.username in html
    assert 'href="/admin/"' in html


def test_view_site_goes_somewhere_real() -> None:
    client = Client()
    client.force_login(UserFactory(is_superuser=True))
    admin = client.get("/admin/").content.decode()
    assert "View site" not in admin or 'href="/"' in admin
    assert client.get("/").status_code == 302 and client.get("/")["Location"] == "/admin/"


def test_every_admin_page_names_a_favicon_and_favicon_ico_finds_it() -> None:
    assert 'rel="icon"' in Client().get("/admin/login/").content.decode()
    response = Client().get("/favicon.ico")
    assert response.status_code in (301, 302) and response["Location"].endswith("common/favicon.svg")
