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
from bench.raw_loop import build_parser as raw_loop_parser
from bench.results import (
    AUDIT,
    CACHE,
    EOS,
    LATENCY,
    NO_METRICS,
    OVERHEADS,
    RAW,
    RAW_ACKS1,
    SERVICE,
    SERVICE_EOS,
    STARTUP,
    TRACING,
    W1,
    W2,
    WORKLOADS,
    Run,
    Suite,
)
from bench.runs import PROMPT_BYTES, gauge_value
from bench.suite import (
    DEFAULT_LATENCY_RATE,
    EXACTLY_ONCE,
    FULL,
    QUICK,
    latency_rate,
    latency_variants,
    w1_variants,
)
from bench.visible import sources
from stream_service.config import load_config
from stream_service.messages import Request
from stream_service.tools.produce import RequestGenerator

OUTPUTS = Outputs(results="r", errors="e", group="g")


def test_only_accepts_workload_names_in_any_case() -> None:
    """--only takes a comma list of workloads, case-insensitive; nothing means all of them."""
    assert parse_only("w1, Latency,MEMORY") == {W1, "latency", "memory"}
    assert parse_only("EOS,startup") == {EOS, STARTUP}
    assert parse_only(None) == set(WORKLOADS)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown workload 'w9'"):
        parse_only("w1,w9")


def test_parser_defaults_to_five_repetitions_and_a_provisioned_broker() -> None:
    """Without flags: 5 interleaved repetitions, every workload, no bootstrap (LocalKafka is started)."""
    args = build_parser().parse_args([])
    assert (args.reps, args.quick, args.only, args.bootstrap_servers) == (5, False, None, None)
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
    ("options", "expected"),
    [
        pytest.param({}, ("all", False, False, None, 0.0), id="(a): the service's delivery settings"),
        pytest.param({"acks1": True}, ("1", True, True, None, 0.0), id="(a'): acks=1, no idempotence"),
        pytest.param(
            {"concurrency": 64, "sleep_ms": 20.0}, ("all", False, False, 64, 20.0), id="raw W2 loop"
        ),
    ],
)
def test_raw_loop_variants_parse_into_their_delivery_settings(
    options: dict[str, object], expected: tuple[object, ...]
) -> None:
    """Each raw loop variant's command line parses into the delivery settings it stands for."""
    argv = raw_loop_argv("h:1", "in", OUTPUTS, total=10, **options)  # type: ignore[arg-type]
    args = raw_loop_parser().parse_args(argv[3:])
    assert (
        args.acks,
        args.no_idempotence,
        args.read_uncommitted,
        args.concurrency,
        args.sleep_ms,
    ) == expected


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
    """W1 runs (a), (a'), (b), (e); eos alone runs (b) and (e); overheads add the toggles after (b)."""
    assert w1_variants({W1}) == [RAW, RAW_ACKS1, SERVICE, SERVICE_EOS]
    assert w1_variants({W1, OVERHEADS}) == [
        RAW,
        RAW_ACKS1,
        SERVICE,
        SERVICE_EOS,
        AUDIT,
        NO_METRICS,
        CACHE,
        TRACING,
    ]
    assert w1_variants({OVERHEADS}) == [SERVICE, AUDIT, NO_METRICS, CACHE, TRACING]
    assert w1_variants({EOS}) == [SERVICE, SERVICE_EOS]
    assert w1_variants({W2}) == []


def test_latency_runs_three_loads_and_exactly_once_at_half() -> None:
    """latency runs at least once at 50/25/75%, exactly once at 50% of (b) and of (e), and the raw loop
    at 50% as the reference; eos the service's 50%s."""
    names = [v.name for v in latency_variants({LATENCY})]
    assert names == [
        "service 50%",
        "service-eos 50%",
        "service-eos 50% of (e)",
        "service 25%",
        "service 75%",
        "raw 50%",
    ]
    assert [v.name for v in latency_variants({EOS})] == names[:3]
    assert latency_variants({W1}) == []


def test_exactly_once_settings_are_valid_and_select_the_guarantee() -> None:
    """The exactly-once variant's settings are accepted by the config and switch the guarantee."""
    config = load_config(environ={}, flags={k: str(v).lower() for k, v in EXACTLY_ONCE.items()})
    assert config.delivery.guarantee == "exactly_once" and config.cache.enabled is False


def test_latency_rate_is_half_of_w1_unless_given() -> None:
    """The 50% rate is half of W1 (b)'s median; a given rate wins; without W1 a default applies."""
    suite = Suite(command="", started_at="")
    assert latency_rate(suite, None) == (DEFAULT_LATENCY_RATE, "default: W1 did not run")
    suite.runs = [
        Run(workload=W1, variant=SERVICE, rep=i, values={"msg_s": v}) for i, v in enumerate([8e3, 1e4])
    ]
    assert latency_rate(suite, None) == (4_500.0, "50% of W1 (b) median")
    assert latency_rate(suite, 123.0) == (123.0, "given with --latency-rate")


def test_full_scale_matches_the_issue_and_quick_is_smaller() -> None:
    """Full runs use the issue's W1 count and backlogs (W2 doubled); --quick shrinks every one of them."""
    assert (FULL.w1, FULL.w2, FULL.memory_backlogs) == (200_000, 40_000, (200_000, 50_000))
    assert QUICK.w1 < FULL.w1 and QUICK.w2 < FULL.w2 and QUICK.w3 < FULL.w3
    assert QUICK.latency_s < FULL.latency_s and QUICK.memory_window_s < FULL.memory_window_s
    assert QUICK.startup_backlog < FULL.startup_backlog


def test_lineage_headers_name_the_source_record() -> None:
    """The visibility reader matches an output to its input by the source-partition/offset headers."""
    headers = [("source-topic", b"in"), ("source-partition", b"3"), ("source-offset", b"1234")]
    assert sources(headers) == (3, 1234)
    assert sources([("source-partition", b"3")]) is None


def test_gauge_value_reads_an_unlabelled_sample() -> None:
    """The in-flight gauge is read from the Prometheus text exposition; absent means None."""
    text = (
        "# HELP stream_service_in_flight_requests Requests read but not yet committed.\n"
        "# TYPE stream_service_in_flight_requests gauge\n"
        "stream_service_in_flight_requests 998.0\n"
        "stream_service_in_flight_requests_total 5.0\n"
    )
    assert gauge_value(text, "stream_service_in_flight_requests") == 998.0
    assert gauge_value(text, "stream_service_other") is None


async def test_sleep_plugin_waits_then_echoes() -> None:
    """The W2 plugin awaits about 20 ms and answers with the prompt."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await sleep20(Request(id="1", prompt="hi")) == "hi"
    assert loop.time() - started >= 0.019
