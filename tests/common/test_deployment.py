"""docker-compose.yml against what CI tests: the same Apache Kafka, and every LogiFlow process watched and ordered.

The file's shape is validated against the Compose specification by `make check-compose`; these are the project's rules.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.conf import settings

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
