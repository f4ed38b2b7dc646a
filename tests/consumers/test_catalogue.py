"""The event catalogue (AsyncAPI 3.0): generated from the contracts and the handler registry, committed and current,
valid for the official AsyncAPI CLI, served beside the OpenAPI schema with its permissions, rendered on a sandboxed
page, and linked from each dead letter to its event version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from apps.consumers.catalogue import REGENERATE, asyncapi_document, asyncapi_yaml, message_anchor
from apps.contracts import EVENT_TYPES, CustomerUpserted, InvoiceGenerated, RouteCalculated
from tests.consumers.factories import dead_letter_of_type, role_user

COMMITTED = Path(settings.BASE_DIR) / "docs" / "asyncapi.yaml"
CLI = Path(settings.BASE_DIR) / "tools" / "asyncapi" / "node_modules" / ".bin" / "asyncapi"


def test_the_committed_catalogue_is_the_one_the_code_generates() -> None:
    assert COMMITTED.read_text() == asyncapi_yaml(), (
        f"docs/asyncapi.yaml is not what the code generates: regenerate it with `{REGENERATE}` and commit it"
    )


def test_each_event_version_is_a_message_with_its_schema_headers_key_publisher_and_readers() -> None:
    document = asyncapi_document()
    messages = document["components"]["messages"]
    assert set(messages) == {"RouteCalculated.v1", "CustomerUpserted.v1", "InvoiceGenerated.v1"}
    assert len(messages) == len(EVENT_TYPES)
    route = messages["RouteCalculated.v1"]
    payload = RouteCalculated.model_json_schema(ref_template="#/components/schemas/{model}")
    assert route["payload"] == {k: v for k, v in payload.items() if k != "$defs"}
    assert document["components"]["schemas"]["DepotRef"] == payload["$defs"]["DepotRef"]
    assert route["headers"]["properties"]["ce_type"]["const"] == "logiflow.routing.RouteCalculated.v1"
    assert {"ce_id", "ce_specversion", "ce_source", "ce_time", "content-type"} <= set(route["headers"]["required"])
    assert "traceparent" in route["headers"]["properties"]
    assert route["bindings"]["kafka"]["key"]["pattern"] == "^truck:[0-9]+$"
    assert route["correlationId"]["location"] == "$message.header#/ce_id"
    assert route["x-logiflow"]["publisher"] == "apps.routing"
    assert route["x-logiflow"]["consumer-groups"] == ["invoicing"]
    assert messages["InvoiceGenerated.v1"]["x-logiflow"]["consumer-groups"] == ["routing"]
    assert messages["InvoiceGenerated.v1"]["bindings"]["kafka"]["key"]["pattern"] == "^route:[0-9]+$"
    assert "apps.invoicing.handlers.learn_customer" in messages["CustomerUpserted.v1"]["description"]
    for description in (route["description"], document["info"]["description"]):
        assert "at-least-once" in description.lower() and "per-key order" in description.lower()
        assert "ce_id" in description


def test_channels_and_operations_say_who_publishes_and_which_groups_read() -> None:
    document = asyncapi_document()
    assert set(document["channels"]) == {"routing.events", "invoicing.events"}
    assert set(document["channels"]["routing.events"]["messages"]) == {"RouteCalculated.v1", "CustomerUpserted.v1"}
    operations = document["operations"]
    assert operations["routing.publishes.routing.events"]["action"] == "send"
    reads = operations["invoicing.reads.routing.events"]
    assert reads["action"] == "receive"
    assert reads["bindings"]["kafka"]["groupId"]["enum"] == ["invoicing"]
    assert {m["$ref"] for m in operations["routing.reads.invoicing.events"]["messages"]} == {
        "#/channels/invoicing.events/messages/InvoiceGenerated.v1"
    }


def test_the_command_prints_the_document_as_yaml_or_json() -> None:
    as_yaml, as_json = StringIO(), StringIO()
    call_command("asyncapi", stdout=as_yaml)
    call_command("asyncapi", "--format", "json", stdout=as_json)
    assert yaml.safe_load(as_yaml.getvalue()) == json.loads(as_json.getvalue()) == asyncapi_document()


# Skipped without the CLI (no npm), unless LOGIFLOW_REQUIRE_ASYNCAPI_CLI is set (CI): then it fails.
@pytest.mark.skipif(not CLI.exists() and not os.environ.get("LOGIFLOW_REQUIRE_ASYNCAPI_CLI"),
                    reason="no AsyncAPI CLI: `make setup` installs it where npm is on the PATH")
def test_the_official_asyncapi_cli_finds_the_document_valid(tmp_path: Path) -> None:
    assert shutil.which("node"), "the AsyncAPI CLI needs node on PATH"
    document = tmp_path / "asyncapi.yaml"
    document.write_text(asyncapi_yaml())
    result = subprocess.run(
        [str(CLI), "validate", str(document), "--fail-severity", "warn"], capture_output=True, text=True,
        timeout=120, env=_cli_env(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout


def test_the_cli_refuses_a_broken_document(tmp_path: Path) -> None:
    """The check above can fail: a message whose payload is no schema is refused."""
    if not CLI.exists():
        pytest.skip("no AsyncAPI CLI: `make setup` installs it")
    broken = asyncapi_document()
    broken["components"]["messages"]["RouteCalculated.v1"]["payload"] = {"type": "no-such-type"}
    document = tmp_path / "asyncapi.json"
    document.write_text(json.dumps(broken))
    result = subprocess.run([str(CLI), "validate", str(document)], capture_output=True, text=True, timeout=120,
                            env=_cli_env(tmp_path))
    assert result.returncode != 0, result.stdout


def _cli_env(tmp_path: Path) -> dict[str, str]:
    # The CLI's usage metrics stay off (it would write a settings file to $HOME and try to send them).
    return {**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(Path(settings.BASE_DIR) / "tools" / "asyncapi" /
                                                            "analytics.json"), "SUPPRESS_NO_CONFIG_WARNING": "1"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/asyncapi/", "/api/events/"])
def test_the_catalogue_needs_what_the_openapi_schema_needs(path: str) -> None:
    anonymous = APIClient()
    assert anonymous.get(path).status_code == anonymous.get("/api/schema/").status_code == 401
    user = APIClient()
    user.force_login(role_user("dispatcher"))
    assert user.get(path).status_code == user.get("/api/schema/").status_code == 200


@pytest.mark.django_db
def test_the_document_is_served_as_yaml_or_json() -> None:
    client = APIClient()
    client.force_login(role_user("finance"))
    as_yaml = client.get("/api/asyncapi/")
    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.content) == asyncapi_document()
    assert client.get("/api/asyncapi/?format=json").json() == asyncapi_document()


@pytest.mark.django_db
def test_the_page_carries_the_document_and_runs_the_vendored_renderer_in_a_sandbox() -> None:
    client = Client()
    client.force_login(role_user("operations"))
    response = client.get("/api/events/")
    page = response.content.decode()
    assert "/static/consumers/vendor/asyncapi-react/standalone.js" in page and "https://" not in page
    assert "<script>" not in page, "inline scripts would need 'unsafe-inline'"
    assert 'id="asyncapi-document" type="application/json"' in page
    policy = response["Content-Security-Policy"]
    # The renderer's schema compiler needs 'unsafe-eval': granted only to this page, which the sandbox keeps from
    # the site's origin (no cookies, no session, no same-origin requests).
    assert "sandbox allow-scripts" in policy and "'unsafe-eval'" in policy
    assert "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    assert "'unsafe-eval'" not in client.get("/api/docs/")["Content-Security-Policy"]
    assert "'unsafe-eval'" not in client.get("/admin/")["Content-Security-Policy"]


def test_each_known_event_version_has_its_anchor_in_the_catalogue() -> None:
    assert message_anchor(RouteCalculated.ce_type()) == "message-RouteCalculated.v1"
    assert message_anchor(InvoiceGenerated.ce_type()) == "message-InvoiceGenerated.v1"
    assert message_anchor(CustomerUpserted.ce_type()) == "message-CustomerUpserted.v1"
    assert message_anchor("logiflow.routing.RouteCalculated.v9") is None
    assert message_anchor("") is None


@pytest.mark.django_db(serialized_rollback=True)
def test_a_dead_letter_page_links_to_its_event_version_in_the_catalogue() -> None:
    letter = dead_letter_of_type(RouteCalculated.ce_type())
    client = Client()
    client.force_login(role_user("operations"))
    page = client.get(reverse("admin:consumers_deadletter_change", args=[letter.pk])).content.decode()
    assert 'href="/api/events/#message-RouteCalculated.v1"' in page


@pytest.mark.django_db(serialized_rollback=True)
def test_a_dead_letter_of_a_version_the_contracts_do_not_know_says_so_instead_of_linking() -> None:
    letter = dead_letter_of_type("logiflow.routing.RouteCalculated.v9")
    client = Client()
    client.force_login(role_user("operations"))
    page = client.get(reverse("admin:consumers_deadletter_change", args=[letter.pk])).content.decode()
    assert "/api/events/#message-" not in page
    assert "not in the event catalogue" in page


@pytest.mark.django_db(serialized_rollback=True)
def test_every_admin_page_links_to_the_catalogue() -> None:
    client = Client()
    client.force_login(role_user("finance"))
    for url in ("/admin/", reverse("admin:consumers_deadletter_changelist")):
        assert '<a href="/api/events/">Event catalogue</a>' in client.get(url).content.decode(), url
