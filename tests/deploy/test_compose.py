"""deploy/compose/compose.yaml: valid against the Compose Specification schema (what `docker compose
config` checks, without Docker), and wired as the deploy kit promises: pinned images, health-gated
start order, two replicas, graceful stops, and files that exist."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stream_service.cli import build_parser
from stream_service.config import load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
SCHEMA = COMPOSE_DIR / "schema" / "compose-spec.json"
PROMETHEUS_CONFIG = REPO / "deploy" / "monitoring" / "prometheus" / "prometheus.yaml"
PROMTOOL = Path(sys.executable).with_name("promtool")
_DURATION = re.compile(r"^(\d+)s$")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def stream_service_config() -> Any:
    source = compose()["configs"]["stream-service-config"]["file"]
    return load_config(file=str(COMPOSE_DIR / source), environ={})


def test_vendored_schema_is_the_recorded_one() -> None:
    """schema/compose-spec.json has the sha256 its README records (an update must say where it came from)."""
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest in (COMPOSE_DIR / "schema" / "README.md").read_text()


def test_compose_file_matches_the_compose_specification() -> None:
    """compose.yaml validates against the Compose Specification JSON schema."""
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_rejects_a_broken_file() -> None:
    """The schema check bites: an unknown service key and an unknown depends_on condition are errors."""
    broken = compose()
    broken["services"]["stream-service"]["replica"] = 2
    broken["services"]["topics"]["depends_on"]["kafka"]["condition"] = "when_ready"
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert len(list(validator.iter_errors(broken))) >= 2


def test_stack_has_kafka_topics_service_prometheus_and_grafana() -> None:
    """Apache Kafka 4.1.1 (the official image, KRaft), the topics one-shot, two service replicas,
    Prometheus and Grafana; every image pinned to a version."""
    svc = services()
    assert {"kafka", "topics", "stream-service", "prometheus", "grafana"} <= set(svc)
    assert svc["kafka"]["image"] == "apache/kafka:4.1.1"
    assert "broker,controller" in svc["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name, service in svc.items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin the image ({image})"
    assert svc["stream-service"]["deploy"]["replicas"] == 2


def test_start_order_waits_for_health_and_for_the_topics() -> None:
    """Every depends_on names a condition; the topics wait for a healthy broker, the service for the
    topics to be created, and the broker has the health check those conditions need."""
    svc = services()
    for name, service in svc.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert isinstance(rule, dict) and "condition" in rule, f"{name} -> {dependency}: give a condition"
            assert dependency in svc
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in svc[dependency], dependency
    assert svc["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert svc["stream-service"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert svc["topics"]["restart"] == "no"


def test_replicas_stop_gracefully_and_run_locked_down() -> None:
    """stop_grace_period exceeds delivery.shutdown_timeout_s; the root filesystem is read-only with /tmp
    writable, no capabilities and no new privileges."""
    service = services()["stream-service"]
    grace = _DURATION.match(service["stop_grace_period"])
    assert grace and int(grace.group(1)) > stream_service_config().delivery.shutdown_timeout_s
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
    assert (REPO / "deploy" / "image" / "Dockerfile").samefile(
        COMPOSE_DIR / service["build"]["context"] / service["build"]["dockerfile"]
    )


@pytest.mark.parametrize("name", ["topics", "stream-service", "load"])
def test_commands_parse_and_share_one_configuration(name: str) -> None:
    """The topics, service and load commands are valid `stream-service` command lines and read the same
    configuration file, which is a valid configuration."""
    service = services()[name]
    build_parser().parse_args(service["command"])
    assert service["environment"]["STREAM_SERVICE_CONFIG"] == service["configs"][0]["target"]
    assert service["configs"][0]["source"] == "stream-service-config"
    stream_service_config()


def test_mounted_files_exist_and_prometheus_scrapes_the_ops_port() -> None:
    """Every bind-mounted path exists; Prometheus' config passes promtool and scrapes the service's
    metrics port; Grafana gets the provisioning and the dashboard."""
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
    assert PROMTOOL.exists(), f"{PROMTOOL} missing: deploy/dev.sh setup extracts promtool"
    proc = subprocess.run(
        [str(PROMTOOL), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (scrape,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    assert scrape["job_name"] == "stream-service"
    (sd,) = scrape["dns_sd_configs"]
    assert (
        sd["names"] == ["stream-service"] and sd["port"] == stream_service_config().observability.metrics_port
    )
    grafana = " ".join(services()["grafana"]["volumes"])
    assert "/etc/grafana/provisioning" in grafana and "/var/lib/grafana/dashboards" in grafana
