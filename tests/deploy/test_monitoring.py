"""deploy/monitoring: the alert rules pass promtool (check and unit tests), each has a runbook, the
dashboard covers what operators watch, and every metric the dashboard, the alerts and the operations
guide query is one a running service exports."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Outputs, ServiceProcess, fresh_topics, produce, workload

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "monitoring" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yaml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yaml"
DASHBOARD = REPO / "deploy" / "monitoring" / "grafana" / "dashboards" / "stream-service.json"
OPERATIONS = REPO / "docs" / "operations.md"
PROMTOOL = Path(sys.executable).with_name("promtool")  # deploy/dev.sh links it from Debian's prometheus
# Grafana's variables, replaced by values PromQL accepts before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": ".*"}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[str]:
    exprs = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    return exprs


def operations_guide_exprs() -> list[str]:
    """The PromQL examples in docs/operations.md (```promql blocks, comments dropped)."""
    blocks = re.findall(r"```promql\n(.*?)```", OPERATIONS.read_text(), re.DOTALL)
    return [
        line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")
    ]


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects (a selector without a metric name is an error)."""
    names: set[str | None] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    assert None not in names, f"select metrics by name: {expr}"
    return {n for n in names if n is not None}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.exists(), (
        f"{PROMTOOL} missing: deploy/dev.sh setup extracts promtool from Debian's prometheus"
    )
    return subprocess.run(
        [str(PROMTOOL), *args], capture_output=True, text=True, cwd=PROMETHEUS, timeout=120, check=False
    )


def test_alert_rules_pass_promtool_check() -> None:
    """promtool check rules accepts alerts.yaml."""
    proc = promtool("check", "rules", ALERTS.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rule_unit_tests_pass() -> None:
    """promtool test rules runs alerts.test.yaml: each alert fires on its story and stays silent otherwise."""
    proc = promtool("test", "rules", ALERT_TESTS.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_section() -> None:
    """Each alert is tested in alerts.test.yaml and links a runbook heading that docs/operations.md has."""
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.MULTILINE)
    }
    names = [rule["alert"] for rule in rules()]
    assert len(names) >= 6
    for rule in rules():
        name = rule["alert"]
        assert name in tested, f"{name} has no firing case in alerts.test.yaml"
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == name.lower() and anchor in headings, (
            f"docs/operations.md needs a '### {name}' runbook"
        )
        assert rule["labels"]["severity"] in ("warning", "critical"), name


@pytest.mark.parametrize(
    ("topic", "metric"),
    [
        pytest.param("throughput", "stream_service_consumed_total", id="throughput"),
        pytest.param("lag per partition", "stream_service_consumer_lag", id="lag"),
        pytest.param(
            "end-to-end latency", "stream_service_end_to_end_seconds_bucket", id="end-to-end latency"
        ),
        pytest.param(
            "processing latency", "stream_service_processing_seconds_bucket", id="processing latency"
        ),
        pytest.param("errors by type", "stream_service_errors_total", id="errors"),
        pytest.param("in flight", "stream_service_in_flight_requests", id="in flight"),
        pytest.param("paused partitions", "stream_service_paused_partitions", id="paused"),
        pytest.param("batch size", "stream_service_batch_size_bucket", id="batch size"),
        pytest.param("cache hit rate", "stream_service_cache_hits_total", id="cache"),
        pytest.param("RSS", "process_resident_memory_bytes", id="rss"),
        pytest.param("event-loop lag", "stream_service_event_loop_lag_seconds", id="event loop"),
    ],
)
def test_dashboard_shows(topic: str, metric: str) -> None:
    """The dashboard has a panel querying each figure operators watch."""
    assert any(metric in metric_names(expr) for expr in dashboard_exprs()), f"no panel shows {topic}"


def test_dashboard_is_well_formed() -> None:
    """Unique uid, panel ids and refIds; every query goes through the datasource variable."""
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "stream-service"
    panels = list(dashboard_panels())
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(set(refs)) == len(refs), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job"}


def exported_names(exposition: str) -> set[str]:
    """Every series name a /metrics exposition declares, including families that have no sample yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


@pytest.mark.integration
async def test_every_queried_metric_is_exported_by_a_running_service(kafka_bootstrap: str) -> None:
    """Each metric named by the dashboard, the alert rules and the operations guide's queries is on the
    /metrics of a service that is consuming."""
    topics = await fresh_topics(kafka_bootstrap, input_partitions=2)
    await produce(kafka_bootstrap, topics.input, workload(200).records)
    service = await ServiceProcess(kafka_bootstrap, topics, "--processor", "echo").start()
    try:
        await service.wait_for("ops.listening")
        async with Outputs(kafka_bootstrap, topics) as out:
            await out.until(out.answered(200), 60, "the requests answered")
        port = service.ops_port()
        url = f"http://127.0.0.1:{port}/metrics"
        exposition = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        assert await service.stop() == 0
    exported = exported_names(exposition)
    queried: dict[str, set[str]] = {}
    for where, exprs in (
        ("alerts.yaml", [rule["expr"] for rule in rules()]),
        ("the dashboard", dashboard_exprs()),
        ("docs/operations.md", operations_guide_exprs()),
    ):
        assert exprs, f"no PromQL found in {where}"
        for expr in exprs:
            for name in metric_names(expr):
                queried.setdefault(name, set()).add(where)
    missing = {name: sorted(places) for name, places in queried.items() if name not in exported}
    assert not missing, f"queried but not exported by the service: {missing}"
