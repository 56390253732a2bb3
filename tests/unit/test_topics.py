"""Tests for stream_service.tools.topics: the plan, the comparison with a described topic, the CLI."""

from __future__ import annotations

import pytest

from stream_service.cli import build_parser
from stream_service.errors import ToolError
from stream_service.settings import Config, TopicSettings
from stream_service.tools.topics import Finding, TopicSpec, compare, plan_topics, render

CONFIG = Config(topics=TopicSettings(input="in", results="out", errors="err"))


def partitions(n: int, replicas: int) -> list[dict[str, object]]:
    return [{"partition": p, "leader": 1, "replicas": list(range(replicas))} for p in range(n)]


def test_plan_names_the_configured_topics_with_safe_defaults() -> None:
    """By default: 8 partitions everywhere, RF 3, min ISR 2 on all three, 14 days on the errors topic."""
    specs = plan_topics(CONFIG)
    assert [(s.role, s.name, s.partitions, s.replication_factor) for s in specs] == [
        ("input", "in", 8, 3),
        ("results", "out", 8, 3),
        ("errors", "err", 8, 3),
    ]
    assert all(s.configs["min.insync.replicas"] == "2" for s in specs)
    assert specs[2].configs["retention.ms"] == str(14 * 86_400_000)
    assert "retention.ms" not in specs[0].configs and "retention.ms" not in specs[1].configs


@pytest.mark.parametrize(
    ("rf", "min_isr"),
    [pytest.param(1, "1", id="one broker: min ISR 1"), pytest.param(2, "1", id="RF 2: min ISR 1")],
)
def test_min_insync_replicas_defaults_to_one_below_the_replication_factor(rf: int, min_isr: str) -> None:
    """min.insync.replicas defaults to RF - 1, never below 1."""
    assert {s.configs["min.insync.replicas"] for s in plan_topics(CONFIG, replication_factor=rf)} == {min_isr}


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"partitions": 0}, id="no partitions"),
        pytest.param({"replication_factor": 3, "min_insync_replicas": 4}, id="min ISR above RF"),
        pytest.param({"errors_retention_days": 0}, id="no retention"),
    ],
)
def test_impossible_plans_are_refused(kwargs: dict[str, int]) -> None:
    """A plan Kafka would reject, or that could never be met, is refused before connecting."""
    with pytest.raises(ToolError):
        plan_topics(CONFIG, **kwargs)  # type: ignore[arg-type]


def test_compare_reports_every_difference() -> None:
    """Partition count, replication factor and each planned config are compared with the topic's."""
    spec = TopicSpec("errors", "err", 8, 3, {"min.insync.replicas": "2", "retention.ms": "100"})
    assert compare(spec, partitions(8, 3), {"min.insync.replicas": "2", "retention.ms": "100"}) == []
    assert compare(spec, partitions(4, 1), {"min.insync.replicas": "1", "retention.ms": "100"}) == [
        "4 partitions, planned 8",
        "replication factor 1, planned 3",
        "min.insync.replicas=1, planned 2",
    ]


def test_render_says_what_differs_and_the_verdict() -> None:
    """The text output has one line per topic, the problems under it, and OK or NOT AS PLANNED."""
    spec = TopicSpec("input", "in", 8, 3, {"min.insync.replicas": "2"})
    good = render([Finding(spec, "created")])
    assert good.endswith("OK\n") and "created" in good
    bad = render([Finding(spec, "differs", ["4 partitions, planned 8"])])
    assert "    - 4 partitions, planned 8" in bad and bad.endswith("NOT AS PLANNED\n")


def test_cli_parses_create_and_check() -> None:
    """`stream-service topics create|check` take the connection, topic and plan flags."""
    parser = build_parser()
    args = parser.parse_args(
        [
            "topics",
            "create",
            "--bootstrap-servers",
            "k:9092",
            "--partitions",
            "12",
            "--replication-factor",
            "1",
        ]
    )
    assert (args.topics_command, args.partitions, args.replication_factor) == ("create", 12, 1)
    assert parser.parse_args(["topics", "check", "--errors-retention-days", "30"]).errors_retention_days == 30
