"""Tests for bench.report and bench.explanations: RESULTS.md tables, the targets first, kept explanations."""

from __future__ import annotations

from pathlib import Path

from bench import explanations
from bench.report import render
from bench.results import (
    AUDIT,
    IDLE,
    LATENCY,
    MEMORY,
    PROCESS,
    RAW,
    RAW_ACKS1,
    SERVICE,
    SERVICE_EOS,
    STARTUP,
    W1,
    W2,
    W3,
    Machine,
    Run,
    Suite,
    backlog_variant,
    decode,
    encode,
    latency_variant,
    w2_variant,
)
from bench.targets import targets

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
    "w2_count": 40_000,
    "w2_concurrencies": [64, 256],
    "w2_sleep_ms": 20.0,
    "linger_ms": 5.0,
    "memory_in_flight": 1000,
    "startup_backlog": 1000,
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


def _runs(workload: str, variant: str, values: list[float], key: str = "msg_s") -> list[Run]:
    return [Run(workload=workload, variant=variant, rep=i, values={key: v}) for i, v in enumerate(values)]


def _latency(variant: str, p99: list[float], visible_p99: list[float]) -> list[Run]:
    return [
        Run(
            workload=LATENCY,
            variant=variant,
            rep=i,
            values={"p50_ms": 12.0, "p99_ms": a, "visible_p99_ms": v, "processing_p99_ms": 1.0},
        )
        for i, (a, v) in enumerate(zip(p99, visible_p99, strict=True))
    ]


def _memory(variant: str, backlog: int, bound: int, steady: float, in_flight: float) -> Run:
    values = {
        "backlog": float(backlog),
        "in_flight_bound": float(bound),
        "peak_rss_mb": steady + 5,
        "steady_rss_mb": steady,
        "in_flight": in_flight,
    }
    return Run(workload=MEMORY, variant=variant, rep=0, values=values)


def _full_suite() -> Suite:
    runs = [
        *_runs(W1, RAW, [10_000.0, 12_000.0, 11_000.0]),
        *_runs(W1, RAW, [20.0, 21.0, 22.0], "cpu_us_per_record"),
        *_runs(W1, RAW_ACKS1, [12_000.0, 12_500.0, 13_000.0]),
        *_runs(W1, SERVICE, [9_500.0, 10_500.0, 9_800.0]),
        *_runs(W1, SERVICE, [24.0, 23.0, 25.0], "cpu_us_per_record"),
        *_runs(W1, SERVICE_EOS, [8_000.0, 8_200.0, 7_900.0]),
        *_runs(W1, AUDIT, [7_000.0, 7_200.0, 7_100.0]),
        *_runs(W2, w2_variant(RAW, 64), [3_000.0, 3_100.0, 3_050.0]),
        *_runs(W2, w2_variant(SERVICE, 64), [2_900.0, 2_950.0, 3_000.0]),
        *_runs(W2, w2_variant(RAW, 256), [11_000.0, 11_500.0, 10_500.0]),
        *_runs(W2, w2_variant(SERVICE, 256), [10_000.0, 10_200.0, 9_900.0]),
        *_runs(W3, "async", [1_500.0, 1_400.0, 1_450.0]),
        *_runs(W3, PROCESS, [2_500.0, 2_600.0, 2_400.0]),
        *_latency(latency_variant(SERVICE, 50), [40.0, 70.0, 45.0], [42.0, 72.0, 47.0]),
        *_latency(latency_variant(SERVICE_EOS, 50), [60.0, 65.0, 70.0], [150.0, 160.0, 170.0]),
        *_latency(latency_variant(SERVICE_EOS, 50, of_own=True), [50.0, 55.0, 60.0], [120.0, 125.0, 130.0]),
        *_latency(latency_variant(SERVICE, 25), [20.0, 21.0, 22.0], [22.0, 23.0, 24.0]),
        *_latency(latency_variant(RAW, 50), [30.0, 33.0, 31.0], [31.0, 34.0, 32.0]),
        *_runs(STARTUP, RAW, [0.4, 0.5, 0.45], "first_result_s"),
        *_runs(STARTUP, SERVICE, [0.9, 1.1, 1.0], "first_result_s"),
        _memory(IDLE, 0, 1000, 40.0, 0.0),
        _memory(backlog_variant(200_000, 1000), 200_000, 1000, 100.0, 1000.0),
        _memory(backlog_variant(50_000, 1000), 50_000, 1000, 98.0, 1000.0),
        _memory(backlog_variant(200_000, 10_000), 200_000, 10_000, 118.0, 10_000.0),
    ]
    return _suite(runs)


def test_render_puts_the_targets_first_then_a_table_per_workload() -> None:
    """RESULTS.md opens with the Targets table, then the machine, then each workload's table and ratios."""
    text = render(_full_suite())
    order = ["## Targets", "## Where and how", "## W1", "## Overheads", "## W2", "## W3", "## Latency",
             "## Exactly once vs at least once", "## Time to first result", "## Memory"]  # fmt: skip
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    for expected in (
        "Test CPU × 2",
        "| (a) raw aiokafka loop, identical delivery settings | 11,000 | 10,000 | 12,000 |",
        "| (b) stream_service, at least once | 9,800 | 9,500 | 10,500 |",
        "- **b/a = 0.89 (per repetition 0.88–0.95)** (msg/s)",
        "- **CPU per record b/a = 1.14 (per repetition 1.10–1.20)**",
        "- b/a' = 0.78",
        "| stream_service, audit_requests=true | 7,100 | 7,000 | 7,200 | -27.6% |",
        "C = 256: bound min(C / 20 ms = 12,800, raw W2 loop 11,000); **service ÷ bound = 0.91",
        "process ÷ async = 1.72",
        "| at least once, 50% | – | 12.0 (12.0–12.0) |",
        "| exactly once, 50% |",
        "| exactly once, 50% of W1 (e) |",
        "| visible p99 ms, same offered rate (50% of W1 (b)) | 47.0 (42.0–72.0) | 160.0 (150.0–170.0) |",
        "| visible p99 ms at 50% of its own W1 rate | 47.0 (42.0–72.0) | 125.0 (120.0–130.0) |",
        "**Cost of exactly once: 18% of the throughput (e/b = 0.82 (per repetition 0.78–0.84))",
        "+78 ms of visible p99 at 50% of its own rate; +113 ms of visible p99 at the same offered rate.**",
        "| stream_service | 1.00 | 0.90 | 1.10 |",
        "backlog 200,000, bound 10,000: (118.0 − idle 40.0 MB) ÷ 10.00 = **7.8 MB per 1,000 in flight**",
        "between the two bounds at backlog 200,000 (fixed costs such as fetch buffers cancel): 2.0 MB",
        "| W2, C = 256: ≥ 0.9 × min(C / 20 ms, raw W2 loop) | 0.91 (per repetition 0.89–0.94) | **met** |",
        "| Latency: p99 ≤ linger + processing p99 + 50 ms at 50% load | p99 45.0 (40.0–70.0) ms vs 56.0 ms; "
        "raw loop at the same rate p99 31.0 (30.0–33.0) ms |",
        "| raw aiokafka loop (reference), 50% | – | 12.0 (12.0–12.0) |",
        "| Time to first result ≤ 1.5 s after start | 1.00 (0.90–1.10) s; raw loop 0.45 (0.40–0.50) s |",
    ):
        assert expected in text, expected
    assert "Quick smoke run" not in text


def test_every_missed_target_gets_a_marked_place_for_its_explanation() -> None:
    """A miss gets a placeholder in the explanations block; a run without misses says so."""
    suite = _suite([*_runs(W1, RAW, [10_000.0]), *_runs(W1, SERVICE, [5_000.0])], quick=True, reps=1)
    text = render(suite)
    assert "Quick smoke run" in text
    assert (
        "| W1: stream_service ≥ 0.85 × raw loop (identical delivery settings), msg/s | 0.50 | **missed** |"
        in text
    )
    assert explanations.parse(text) == {"W1": explanations.PLACEHOLDER}
    assert "Nothing missed in this run." in render(_suite([]))


def test_written_explanations_survive_a_rewrite(tmp_path: Path) -> None:
    """The lead's text for a target is kept across renders; a bare placeholder of a met target is dropped."""
    missed = _suite([*_runs(W1, RAW, [10_000.0]), *_runs(W1, SERVICE, [5_000.0])])
    text = render(missed).replace(explanations.PLACEHOLDER, "The partitioner costs 9%: see ANALYSIS.md.")
    path = tmp_path / "RESULTS.md"
    path.write_text(text + "\n<!-- scaleout:begin -->\nkept too\n<!-- scaleout:end -->\n")
    kept = explanations.read(path)
    assert kept == {"W1": "The partitioner costs 9%: see ANALYSIS.md."}
    again = render(missed, kept)
    assert "### W1: W1: stream_service ≥ 0.85" in again and "The partitioner costs 9%" in again
    met = _suite([*_runs(W1, RAW, [10_000.0]), *_runs(W1, SERVICE, [9_900.0])])
    assert "not missed in this run" in render(met, kept)
    assert explanations.parse(render(met, {"W1": explanations.PLACEHOLDER})) == {}
    assert explanations.read(tmp_path / "missing.md") == {}


def test_targets_table_matches_the_targets() -> None:
    """Every target appears in the table with its status: met, missed, not measured or reported."""
    suite = _full_suite()
    text = render(suite)
    for target in targets(suite):
        assert f"| {target.name} | {target.measured} |" in text


def test_suite_round_trips_through_json() -> None:
    """results JSON decodes back to the same Suite, so RESULTS.md can be re-rendered later."""
    suite = _full_suite()
    assert render(decode(encode(suite))) == render(suite)
