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
INFRASTRUCTURE = {"postgres", "kafka", "redis"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_apache_kafka_version_the_kafka_lane_tests() -> None:
    tested = re.search(r"<kafka.version>([^<]+)</kafka.version>", (ROOT / "deploy/kafka/pom.xml").read_text())
    assert tested
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{tested.group(1)}"


def test_every_logiflow_process_waits_for_migrate_and_has_a_healthcheck() -> None:
    services = compose()["services"]
    processes = {name: service for name, service in services.items() if name not in INFRASTRUCTURE | {"migrate"}}
    assert {"web", "relay", "consumer-invoicing", "consumer-routing", "celery-worker", "celery-beat"} <= set(processes)
    for name, service in processes.items():
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert not service["healthcheck"].get("disable"), name
        assert service["healthcheck"]["test"], name
    assert "migrate" not in services["migrate"]["depends_on"]


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
