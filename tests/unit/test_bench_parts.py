"""Tests for the pure parts of bench/: the command line, child argv, log parsing, machine facts, plans."""

from __future__ import annotations

import argparse
import asyncio
import re
from itertools import islice

import pytest

from bench.__main__ import build_parser, parse_only
from bench.broker import Outputs, unique
from bench.child import assigned_timestamp, raw_loop_argv, service_argv
from bench.machine import cpu_model, kafka_version_from_jars
from bench.plugins import sleep20
from bench.results import (
    AUDIT,
    CACHE,
    NO_METRICS,
    OVERHEADS,
    RAW,
    SERVICE,
    TRACING,
    W1,
    W2,
    WORKLOADS,
    Run,
    Suite,
)
from bench.runs import PROMPT_BYTES
from bench.suite import DEFAULT_LATENCY_RATE, FULL, QUICK, latency_rate, w1_variants
from stream_service.config import load_config
from stream_service.messages import Request
from stream_service.tools.produce import RequestGenerator

OUTPUTS = Outputs(results="r", errors="e", group="g")


def test_only_accepts_workload_names_in_any_case() -> None:
    """--only takes a comma list of workloads, case-insensitive; nothing means all of them."""
    assert parse_only("w1, Latency,MEMORY") == {W1, "latency", "memory"}
    assert parse_only(None) == set(WORKLOADS)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown workload 'w9'"):
        parse_only("w1,w9")


def test_parser_defaults_to_three_repetitions_and_a_provisioned_broker() -> None:
    """Without flags: 3 interleaved repetitions, every workload, no bootstrap (LocalKafka is started)."""
    args = build_parser().parse_args([])
    assert (args.reps, args.quick, args.only, args.bootstrap_servers) == (3, False, None, None)
    args = build_parser().parse_args(
        ["--quick", "--reps", "1", "--only", "W1,W2", "--bootstrap-servers", "h:1"]
    )
    assert (args.reps, args.quick, args.only, args.bootstrap_servers) == (1, True, {W1, W2}, "h:1")


def test_service_argv_sets_topics_group_and_settings_the_config_accepts() -> None:
    """The service command line names the run's topics and group, and every --set is a valid setting."""
    argv = service_argv(
        "h:1", "in", OUTPUTS, processor="echo", settings={"processor.hrv": False, "executor.concurrency": 256}
    )
    assert argv[1:4] == ["-m", "stream_service", "run"]
    pairs = dict(zip(argv[4::2], argv[5::2], strict=False))
    assert pairs["--input-topic"] == "in" and pairs["--results-topic"] == "r" and pairs["--group-id"] == "g"
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert "processor.hrv=false" in sets and "executor.concurrency=256" in sets
    config = load_config(environ={}, flags=dict(s.split("=", 1) for s in sets))
    assert config.processor.hrv is False and config.executor.concurrency == 256
    assert config.observability.log_format == "json"


def test_unique_names_are_legal_kafka_topic_names() -> None:
    """Variant names like 'service+audit' still give legal, distinct topic names."""
    first, second = unique("w1-service+audit-results"), unique("w1-service+audit-results")
    assert first != second
    assert re.fullmatch(r"[A-Za-z0-9._-]+", first) and first.startswith("bench-w1-service_audit-results-")


def test_raw_loop_argv_runs_the_module_with_its_total() -> None:
    """The raw loop runs as ``python -m bench.raw_loop`` with the same topics and group."""
    argv = raw_loop_argv("h:1", "in", OUTPUTS, total=20_000)
    assert argv[1:3] == ["-m", "bench.raw_loop"]
    assert argv[argv.index("--total") + 1] == "20000"
    assert argv[argv.index("--group-id") + 1] == "g"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            '{"timestamp": "2026-01-01T00:00:01.500000Z", "level": "info", "event": "partitions.assigned"}',
            1767225601.5,
            id="service line (Z suffix)",
        ),
        pytest.param(
            '{"timestamp": "2026-01-01T00:00:01.500000+00:00", "event": "partitions.assigned", "count": 8}',
            1767225601.5,
            id="raw loop line (offset suffix)",
        ),
        pytest.param(
            '{"timestamp": "2026-01-01T00:00:01Z", "event": "service.started"}', None, id="other event"
        ),
        pytest.param("not json partitions.assigned", None, id="not JSON"),
    ],
)
def test_assigned_timestamp_reads_the_start_of_the_clock(line: str, expected: float | None) -> None:
    """Only the partitions.assigned JSON line starts the clock, at its own timestamp."""
    assert assigned_timestamp(line) == expected


def test_cpu_model_and_kafka_version_are_read_from_their_sources() -> None:
    """The CPU model comes from /proc/cpuinfo text; the Kafka version from broker jar names."""
    assert cpu_model("processor\t: 0\nmodel name\t: Fancy CPU @ 3GHz\n") == "Fancy CPU @ 3GHz"
    jars = ["/lib/kafka-coordinator-common-4.1.1.jar", "/lib/kafka-server-4.1.1.jar", "/lib/zstd-jni-1.5.jar"]
    assert kafka_version_from_jars(jars) == "4.1.1"
    assert kafka_version_from_jars(["/libs/kafka_2.13-3.9.0.jar"]) == "3.9.0"
    assert kafka_version_from_jars(["/lib/other.jar"]) is None


def test_generated_requests_are_about_300_bytes() -> None:
    """The benchmark's requests are JSON records of about 300 bytes, as the issue asks."""
    sizes = [len(g.value) for g in islice(RequestGenerator(prompt_bytes=PROMPT_BYTES), 2_000)]
    assert 280 <= sum(sizes) / len(sizes) <= 320


def test_w1_variants_follow_the_selection() -> None:
    """W1 runs (a) and (b); overheads add the toggles, with (b) as their baseline either way."""
    assert w1_variants({W1}) == [RAW, SERVICE]
    assert w1_variants({W1, OVERHEADS}) == [RAW, SERVICE, AUDIT, NO_METRICS, CACHE, TRACING]
    assert w1_variants({OVERHEADS}) == [SERVICE, AUDIT, NO_METRICS, CACHE, TRACING]
    assert w1_variants({W2}) == []


def test_latency_rate_is_half_of_w1_unless_given() -> None:
    """The offered rate is 50% of W1 (b)'s median; a given rate wins; without W1 a default applies."""
    suite = Suite(command="", started_at="")
    assert latency_rate(suite, None) == (DEFAULT_LATENCY_RATE, "default: W1 did not run")
    suite.runs = [
        Run(workload=W1, variant=SERVICE, rep=i, values={"msg_s": v}) for i, v in enumerate([8e3, 1e4])
    ]
    assert latency_rate(suite, None) == (4_500.0, "50% of W1 (b) median")
    assert latency_rate(suite, 123.0) == (123.0, "given with --latency-rate")


def test_full_scale_matches_the_issue_and_quick_is_smaller() -> None:
    """Full runs use the issue's counts; --quick shrinks every one of them."""
    assert (FULL.w1, FULL.w2, FULL.memory_backlogs) == (200_000, 20_000, (200_000, 50_000))
    assert QUICK.w1 < FULL.w1 and QUICK.w2 < FULL.w2 and QUICK.w3 < FULL.w3
    assert QUICK.latency_s < FULL.latency_s and QUICK.memory_window_s < FULL.memory_window_s


async def test_sleep_plugin_waits_then_echoes() -> None:
    """The W2 plugin awaits about 20 ms and answers with the prompt."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await sleep20(Request(id="1", prompt="hi")) == "hi"
    assert loop.time() - started >= 0.019
