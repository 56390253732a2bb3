"""Tests for bench.report: RESULTS.md tables, ratios and where each target stands."""

from __future__ import annotations

import pytest

from bench.report import latency_target_ms, render, targets, w1_ratio, w2_bound
from bench.results import (
    AUDIT,
    LATENCY,
    MEMORY,
    PROCESS,
    RAW,
    SERVICE,
    W1,
    W2,
    W3,
    Machine,
    Run,
    Suite,
    decode,
    encode,
)

MACHINE = Machine(
    cpu_model="Test CPU",
    nproc=2,
    ram_gb=8.0,
    kernel="Linux 6",
    python="CPython 3.11.7",
    kafka="4.1.1",
    aiokafka="0.14.0",
    msgspec="0.22.0",
    stream_service="0.1.0",
    load_avg_start=[0.1, 0.2, 0.3],
)
PARAMS = {
    "w1_count": 200_000,
    "w2_count": 20_000,
    "w2_concurrency": 256,
    "w2_sleep_ms": 20.0,
    "linger_ms": 5.0,
}


def _suite(runs: list[Run], **kwargs: object) -> Suite:
    return Suite(
        command="python -m bench",
        started_at="2026-01-01 00:00:00 UTC",
        finished_at="2026-01-01 00:15:00 UTC",
        wall_s=900.0,
        bootstrap="127.0.0.1:9092",
        broker="provisioned LocalKafka(nodes=1)",
        params=dict(PARAMS),
        machine=MACHINE,
        runs=runs,
        **kwargs,  # type: ignore[arg-type]
    )


def _throughput(workload: str, variant: str, values: list[float]) -> list[Run]:
    return [Run(workload=workload, variant=variant, rep=i, values={"msg_s": v}) for i, v in enumerate(values)]


def _full_suite() -> Suite:
    runs = [
        *_throughput(W1, RAW, [10_000.0, 12_000.0, 11_000.0]),
        *_throughput(W1, SERVICE, [9_000.0, 9_500.0, 8_800.0]),
        *_throughput(W1, AUDIT, [7_000.0, 7_200.0, 7_100.0]),
        *_throughput(W2, SERVICE, [10_000.0, 10_200.0, 9_900.0]),
        *_throughput(W3, "async", [1_500.0, 1_400.0, 1_450.0]),
        *_throughput(W3, PROCESS, [2_500.0, 2_600.0, 2_400.0]),
        *(
            Run(
                workload=LATENCY,
                variant=SERVICE,
                rep=i,
                values={"p50_ms": 12.0, "p99_ms": p99, "processing_p99_ms": 1.0},
            )
            for i, p99 in enumerate([40.0, 70.0, 45.0])
        ),
        Run(
            workload=MEMORY,
            variant="backlog 200,000",
            rep=0,
            values={"backlog": 200_000, "peak_rss_mb": 105.0},
        ),
        Run(
            workload=MEMORY, variant="backlog 50,000", rep=0, values={"backlog": 50_000, "peak_rss_mb": 100.0}
        ),
    ]
    return _suite(runs)


def test_w1_ratio_is_the_ratio_of_medians_with_per_repetition_spread() -> None:
    """b/a divides the medians; the interleaved pairs give the per-repetition ratios."""
    value, per_rep = w1_ratio(_full_suite())
    assert value == 9_000.0 / 11_000.0
    assert per_rep == [0.9, 9_500.0 / 12_000.0, 0.8]


def test_w2_bound_is_the_smaller_of_the_w1_ceiling_and_concurrency_over_sleep() -> None:
    """The W2 bound is min(W1 raw median, C / 20 ms); without W1 it is C / 20 ms alone."""
    bound, how = w2_bound(_full_suite())
    assert bound == 11_000.0
    assert "W1 ceiling 11,000" in how
    alone, how_alone = w2_bound(_suite(_throughput(W2, SERVICE, [1.0])))
    assert alone == 256 / 0.02
    assert "W1 not run" in how_alone


def test_latency_target_adds_linger_processing_and_slack() -> None:
    """The latency target is linger + measured processing p99 + 50 ms."""
    assert latency_target_ms(_full_suite()) == 5.0 + 1.0 + 50.0
    assert latency_target_ms(_suite([])) is None


def test_targets_report_met_missed_and_not_measured() -> None:
    """Each issue target is met, missed, or not measured when its workload did not run."""
    assert [t.met for t in targets(_full_suite())] == [True, True, True, True, True]
    assert all(t.met is None for t in targets(_suite([])))
    slow = _suite([*_throughput(W1, RAW, [10_000.0]), *_throughput(W1, SERVICE, [7_000.0])])
    assert [t.met for t in targets(slow)] == [False, None, None, None, None]


@pytest.mark.parametrize(
    ("large_peak", "flat"),
    [
        pytest.param(150.0, False, id="grows with the backlog"),
        pytest.param(109.0, True, id="within 10 percent"),
        pytest.param(80.0, True, id="smaller at the larger backlog"),
    ],
)
def test_memory_flat_means_not_growing_with_the_backlog(large_peak: float, flat: bool) -> None:
    """Memory is 'flat' when the larger backlog's peak is at most 10% above the smaller one's."""
    runs = [
        Run(
            workload=MEMORY,
            variant="backlog 200,000",
            rep=0,
            values={"backlog": 2e5, "peak_rss_mb": large_peak},
        ),
        Run(workload=MEMORY, variant="backlog 50,000", rep=0, values={"backlog": 5e4, "peak_rss_mb": 100.0}),
    ]
    under, flatness = targets(_suite(runs))[3:]
    assert under.met is True
    assert flatness.met is flat
    assert f"peak at 200,000 ÷ peak at 50,000 = {large_peak / 100:.2f}" == flatness.measured


def test_render_has_machine_tables_ratios_and_targets() -> None:
    """RESULTS.md states the machine and versions, a table per workload, b/a, and the targets."""
    text = render(_full_suite())
    for expected in (
        "Test CPU × 2",
        "| Kafka | 4.1.1 |",
        "## W1 — throughput (200,000 JSON requests",
        "| (a) raw aiokafka loop | 11,000 | 10,000 | 12,000 |",
        "| (b) stream_service | 9,000 | 8,800 | 9,500 |",
        "**b/a = 0.82 (per repetition 0.79–0.90)**",
        "## Overheads",
        "| stream_service, audit_requests=true | 7,100 | 7,000 | 7,200 | -21.1% |",
        "## W2",
        "**msg/s ÷ bound = 0.91",
        "process ÷ async = 1.72",
        "| p99 ms | 45.0 | 40.0 | 70.0 |",
        "## Memory",
        "## Targets",
        "| W2: ≥ 0.9 of min(W1 ceiling, C / 20 ms) | 0.91 | **met** |",
        "p99 45.0 ms vs 56.0 ms | **met** |",
    ):
        assert expected in text, expected
    assert "Quick smoke run" not in text
    assert "ANALYSIS.md" not in text  # nothing missed, nothing to explain


def test_render_marks_quick_runs_and_asks_to_explain_misses() -> None:
    """A quick run says so, and every missed target gets an explanation placeholder."""
    suite = _suite(
        [*_throughput(W1, RAW, [10_000.0]), *_throughput(W1, SERVICE, [5_000.0])],
        quick=True,
        reps=1,
    )
    text = render(suite)
    assert "Quick smoke run" in text
    assert "| W1: stream_service ≥ 0.8 of the raw aiokafka loop | 0.50 | **missed** |" in text
    assert "- W1: stream_service ≥ 0.8 of the raw aiokafka loop: missed; where the time goes" in text
    assert "## W2" not in text


def test_suite_round_trips_through_json() -> None:
    """results JSON decodes back to the same Suite, so RESULTS.md can be re-rendered later."""
    suite = _full_suite()
    assert render(decode(encode(suite))) == render(suite)
