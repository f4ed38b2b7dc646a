"""docker-compose.yml against what CI tests: the same Apache Kafka, and every LogiFlow process watched and ordered.

The file's shape is validated against the Compose specification by `make check-compose`; these are the project's rules.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from unittest import mock

import pytest
import yaml
from django.conf import settings
from pytest_django.fixtures import Settings

from apps.common.metrics import serve_worker_metrics

ROOT = Path(settings.BASE_DIR)
INFRASTRUCTURE = {"postgres", "kafka", "kafka-format", "redis"}
ONE_SHOT = {"migrate", "kafka-setup"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_apache_kafka_version_the_kafka_lane_tests() -> None:
    tested = re.search(r"<kafka.version>([^<]+)</kafka.version>", (ROOT / "deploy/kafka/pom.xml").read_text())
    assert tested
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{tested.group(1)}"


def test_every_logiflow_process_waits_for_migrate_and_the_kafka_setup_and_has_a_healthcheck() -> None:
    services = compose()["services"]
    processes = {name: service for name, service in services.items() if name not in INFRASTRUCTURE | ONE_SHOT}
    assert {"web", "relay", "consumer-invoicing", "consumer-routing", "celery-worker", "celery-beat"} <= set(processes)
    for name, service in processes.items():
        for first in ONE_SHOT:
            assert service["depends_on"][first] == {"condition": "service_completed_successfully"}, name
        assert not service["healthcheck"].get("disable"), name
        assert service["healthcheck"]["test"], name
    for name in ONE_SHOT:
        assert not ONE_SHOT & set(services[name]["depends_on"]), name


def _kafka_properties(environment: dict[str, object]) -> dict[str, str]:
    """The server properties the apache/kafka image makes of its KAFKA_* variables."""
    return {
        name[len("KAFKA_"):].lower().replace("_", ".").replace("...", "-").replace("..", "_"): str(value)
        for name, value in environment.items() if name.startswith("KAFKA_")
    }


def test_compose_kafka_authenticates_every_listener_and_authorizes_by_acls() -> None:
    """Anyone who could reach a PLAINTEXT listener could write routing.events and have invoices issued."""
    kafka = _kafka_properties(compose()["services"]["kafka"]["environment"])
    protocols = dict(pair.split(":") for pair in kafka["listener.security.protocol.map"].split(","))
    listeners = {listener.split("://")[0] for listener in kafka["listeners"].split(",")}
    assert {protocols[name] for name in listeners} == {"SASL_PLAINTEXT"}
    assert kafka["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert kafka["allow.everyone.if.no.acl.found"] == "false"
    assert kafka["super.users"] == "User:admin"


def test_compose_gives_each_process_kind_its_own_kafka_principal_and_the_admin_to_the_setup_alone() -> None:
    services = compose()["services"]
    kinds = {"relay": "RELAY", "consumer-invoicing": "CONSUMER", "consumer-routing": "CONSUMER",
             "kafka-setup": "ADMIN", "web": None, "celery-worker": None, "celery-beat": None, "migrate": None}
    for name, kind in kinds.items():
        environment = services[name]["environment"]
        assert environment["KAFKA_SECURITY_PROTOCOL"].startswith("SASL_"), name
        passwords = {key.split("_")[1] for key in environment if key.startswith("KAFKA_") and key.endswith("_PASSWORD")}
        assert passwords == {"MONITOR"} | ({kind} if kind else set()), name
    formatted = " ".join(services["kafka-format"]["command"])
    for name in kinds:
        for key, username in services[name]["environment"].items():
            if key.startswith("KAFKA_") and key.endswith("_USERNAME"):
                assert f"SCRAM-SHA-512=[name={username}," in formatted, (name, username)




def test_compose_publishes_ports_on_loopback_only() -> None:
    """Plain HTTP (and /metrics' bearer token) must not reach other machines: a TLS proxy on the host publishes."""
    published = {
        name: port for name, service in compose()["services"].items() for port in service.get("ports", [])
    }
    assert published, "web publishes gunicorn"
    for name, port in published.items():
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


@pytest.mark.parametrize("secret", [".env", ".env.production", "deploy/tls/server.key", "certs/site.pem", "var/x"])
def test_the_image_build_context_leaves_secrets_out(secret: str) -> None:
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = any(fnmatch.fnmatch(secret, pattern) or fnmatch.fnmatch(secret, f"{pattern}/*") for pattern in patterns)
    reincluded = any(p.startswith("!") and fnmatch.fnmatch(secret, p[1:]) for p in patterns)
    assert excluded and not reincluded, f"{secret} would be copied into the image"


def test_the_image_build_context_keeps_the_example_env() -> None:
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!.env.example" in patterns


def test_worker_metrics_bind_loopback_unless_a_setting_exposes_them(settings: Settings) -> None:
    with mock.patch("apps.common.metrics.start_http_server") as start:
        assert serve_worker_metrics(9999, name="test")
    assert start.call_args.kwargs["addr"] == "127.0.0.1"
