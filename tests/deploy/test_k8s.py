"""deploy/k8s: every overlay renders with `kubectl kustomize`, validates against the Kubernetes schemas
(kubernetes-validate) and the published CRD schemas of KEDA and the Prometheus operator, and keeps the
service's contract: probes on the ops endpoints, a grace period above the shutdown timeout, a locked-down
security context, and no more replicas than input partitions."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stream_service.config import load_config
from stream_service.settings import Config

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "production", "managed-sasl-ssl")
KUBERNETES_VERSION = (
    "1.32.0"  # the oldest minor the manifests target; its schemas ship with kubernetes-validate
)
CRD_VALIDATOR = K8S / "crd-validation" / "validate.mjs"
CRD_MODULES = Path(sys.executable).parents[1] / "crd-validation" / "node_modules"  # deploy/dev.sh: npm ci
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found: it renders the Kustomize overlays (`kubectl kustomize`)"
    proc = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def one(overlay: str, kind: str) -> dict[str, Any]:
    found = [d for d in rendered(overlay) if d["kind"] == kind]
    assert len(found) == 1, f"{overlay}: expected one {kind}, found {len(found)}"
    return copy.deepcopy(found[0])


def service_config(overlay: str, tmp_path: Path) -> Config:
    """The configuration a replica would run with: the ConfigMap's TOML plus the container's environment,
    Secret references resolved from the overlay's Secret (optional ones dropped when it has none)."""
    toml = one(overlay, "ConfigMap")["data"]["stream-service.toml"]
    path = tmp_path / "stream-service.toml"
    path.write_text(toml)
    secrets = {d["metadata"]["name"]: d["stringData"] for d in rendered(overlay) if d["kind"] == "Secret"}
    environ: dict[str, str] = {}
    for var in container(one(overlay, "Deployment"))["env"]:
        if var["name"] == "STREAM_SERVICE_CONFIG":
            continue
        if "value" in var:
            environ[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        assert value is not None or ref.get("optional"), f"{var['name']}: {ref['name']} has no {ref['key']}"
        if value:
            environ[var["name"]] = value
    return load_config(file=str(path), environ=environ)


def crd_errors(resources: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Validation errors of each custom resource, from the published CRD schemas (via node)."""
    node = shutil.which("node")
    assert node, "node not found: it validates the custom resources (KEDA, Prometheus operator)"
    assert CRD_MODULES.is_dir(), (
        f"{CRD_MODULES} missing: deploy/dev.sh setup installs deploy/k8s/crd-validation"
    )
    proc = subprocess.run(
        [node, str(CRD_VALIDATOR), str(CRD_MODULES)],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return {f"{r['kind']}/{r['name']}": r["errors"] for r in json.loads(proc.stdout)}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(main)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_resources_validate_against_the_kubernetes_schemas(overlay: str) -> None:
    """Every built-in resource of the overlay is valid (strict: no unknown fields) for Kubernetes 1.32."""
    core = [d for d in rendered(overlay) if not d["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert {d["kind"] for d in core} >= {
        "Deployment",
        "ConfigMap",
        "PodDisruptionBudget",
        "Job",
        "ServiceAccount",
    }
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["production", "managed-sasl-ssl"])
def test_custom_resources_validate_against_their_crd_schemas(overlay: str) -> None:
    """The ScaledObject, TriggerAuthentication, PodMonitor and PrometheusRule are valid for their CRDs."""
    custom = [d for d in rendered(overlay) if d["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert {d["kind"] for d in custom} >= {"ScaledObject", "PodMonitor", "PrometheusRule"}
    errors = crd_errors(custom)
    assert len(errors) == len(custom)
    assert not any(errors.values()), errors


def test_the_crd_validation_rejects_a_broken_resource() -> None:
    """The CRD check is not a formality: a wrongly typed field fails it."""
    scaled = one("production", "ScaledObject")
    scaled["spec"]["maxReplicaCount"] = "eight"
    monitor = one("production", "PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["port"] = 8080
    errors = crd_errors([scaled, monitor])
    assert "maxReplicaCount" in " ".join(errors["ScaledObject/stream-service"])
    assert "port" in " ".join(errors["PodMonitor/stream-service"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_probes_grace_period_resources_and_security(overlay: str, tmp_path: Path) -> None:
    """Startup, liveness and readiness probes hit /healthz and /readyz on observability.metrics_port; the
    grace period exceeds delivery.shutdown_timeout_s; requests and limits are set; the pod runs as non-root
    on a read-only root filesystem without privilege escalation or capabilities."""
    config = service_config(overlay, tmp_path)
    deployment = one(overlay, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports["ops"] == config.observability.metrics_port
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert main[probe]["httpGet"] == {"path": path, "port": "ops"}, probe
    assert pod["terminationGracePeriodSeconds"] > config.delivery.shutdown_timeout_s
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][kind]), kind
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert main["args"] == ["run"]
    env = {e["name"]: e for e in main["env"]}
    assert env["STREAM_SERVICE_CONFIG"]["value"].startswith("/etc/stream-service/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budget_and_topics_job_fit_the_deployment(overlay: str, tmp_path: Path) -> None:
    """The PodDisruptionBudget selects exactly the consumer pods; the topics Job runs `topics create` with
    the same configuration."""
    deployment = one(overlay, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = one(overlay, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    job = one(overlay, "Job")
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not budget["spec"]["selector"]["matchLabels"].items() <= job_labels.items(), (
        "the Job's pod is selected"
    )
    (topics,) = job["spec"]["template"]["spec"]["containers"]
    assert topics["args"][:2] == ["topics", "create"]
    assert job["spec"]["template"]["spec"]["volumes"] == [
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"
    ]
    service_config(overlay, tmp_path)  # the TOML is a valid configuration


def planned_partitions(overlay: str) -> int:
    (topics,) = one(overlay, "Job")["spec"]["template"]["spec"]["containers"]
    args = topics["args"]
    return int(args[args.index("--partitions") + 1])


@pytest.mark.parametrize("overlay", ["production", "managed-sasl-ssl"])
def test_scaled_object_scales_on_the_groups_lag_within_the_partitions(overlay: str, tmp_path: Path) -> None:
    """KEDA scales the Deployment on the lag of the service's group and input topic, at the configured
    brokers, with maxReplicaCount no higher than the input partitions the topics Job creates."""
    config = service_config(overlay, tmp_path)
    scaled = one(overlay, "ScaledObject")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == one(overlay, "Deployment")["metadata"]["name"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= planned_partitions(overlay)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == config.topics.group_id
    assert meta["topic"] == config.topics.input
    assert meta["bootstrapServers"] == config.kafka.bootstrap_servers
    assert meta["allowIdleConsumers"] == "false"


def test_sasl_ssl_overlay_authenticates_the_service_and_keda_from_one_secret(tmp_path: Path) -> None:
    """The managed-cluster overlay uses SASL_SSL with SCRAM; every Secret key that the Deployment or KEDA's
    TriggerAuthentication reads exists; the password is not in the ConfigMap."""
    overlay = "managed-sasl-ssl"
    config = service_config(overlay, tmp_path)
    assert config.kafka.security_protocol == "SASL_SSL"
    assert config.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert config.kafka.sasl_password is not None, "the password comes from the Secret"
    assert "sasl_password" not in one(overlay, "ConfigMap")["data"]["stream-service.toml"]
    secret = one(overlay, "Secret")
    keys = set(secret["stringData"])
    env = container(one(overlay, "Deployment"))["env"]
    used = {e["valueFrom"]["secretKeyRef"]["key"] for e in env if "valueFrom" in e}
    auth = one(overlay, "TriggerAuthentication")
    used |= {ref["key"] for ref in auth["spec"]["secretTargetRef"]}
    assert used <= keys, used - keys
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {secret["metadata"]["name"]}
    (trigger,) = one(overlay, "ScaledObject")["spec"]["triggers"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_prometheus_rule_carries_the_alert_rules_file() -> None:
    """The PrometheusRule has exactly the groups of deploy/monitoring/prometheus/alerts.yaml."""
    alerts = yaml.safe_load((REPO / "deploy" / "monitoring" / "prometheus" / "alerts.yaml").read_text())
    assert one("production", "PrometheusRule")["spec"]["groups"] == alerts["groups"]


def test_pod_monitor_scrapes_the_consumer_pods_ops_port() -> None:
    """The PodMonitor selects the consumer pods and scrapes /metrics on their ops port as stream-service."""
    monitor = one("production", "PodMonitor")["spec"]
    pod_labels = one("production", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("ops", "/metrics")
    assert pod_labels[monitor["jobLabel"]] == "stream-service"
