"""Tests for bench.targets: the issues' ratios, bounds and limits judged from one Suite."""

from __future__ import annotations

import pytest

from bench.results import (
    IDLE,
    LATENCY,
    MEMORY,
    RAW,
    RAW_ACKS1,
    SERVICE,
    SERVICE_EOS,
    STARTUP,
    W1,
    W2,
    Run,
    Suite,
    backlog_variant,
    latency_variant,
    w2_variant,
)
from bench.targets import (
    eos_ratio,
    latency_target_ms,
    rss_per_thousand,
    rss_slope,
    targets,
    w1_acks1_ratio,
    w1_cpu_ratio,
    w1_ratio,
    w2_bound,
    w2_ratio,
)

PARAMS = {"w2_sleep_ms": 20.0, "w2_concurrencies": [64, 256], "linger_ms": 5.0, "memory_in_flight": 1000}


def runs(workload: str, variant: str, key: str, values: list[float]) -> list[Run]:
    return [Run(workload=workload, variant=variant, rep=i, values={key: v}) for i, v in enumerate(values)]


def suite(*groups: list[Run]) -> Suite:
    return Suite(command="", started_at="", params=dict(PARAMS), runs=[r for g in groups for r in g])


def memory(variant: str, backlog: int, bound: int, steady: float, in_flight: float, peak: float) -> Run:
    values = {
        "backlog": float(backlog),
        "in_flight_bound": float(bound),
        "steady_rss_mb": steady,
        "in_flight": in_flight,
        "peak_rss_mb": peak,
    }
    return Run(workload=MEMORY, variant=variant, rep=0, values=values)


def test_w1_ratios_divide_medians_and_pair_repetitions() -> None:
    """b/a, b/a', e/b and the CPU ratio are ratios of medians, with per-repetition pairs."""
    s = suite(
        runs(W1, RAW, "msg_s", [10_000.0, 12_000.0, 11_000.0]),
        runs(W1, RAW_ACKS1, "msg_s", [12_000.0, 13_000.0, 14_000.0]),
        runs(W1, SERVICE, "msg_s", [9_000.0, 9_600.0, 8_800.0]),
        runs(W1, SERVICE_EOS, "msg_s", [4_500.0, 4_800.0, 4_400.0]),
    )
    s.runs += runs(W1, RAW, "cpu_us_per_record", [20.0, 22.0, 21.0])
    s.runs += runs(W1, SERVICE, "cpu_us_per_record", [25.0, 24.0, 26.0])
    assert w1_ratio(s).value == 9_000.0 / 11_000.0
    assert w1_ratio(s).per_rep == [0.9, 0.8, 0.8]
    assert w1_acks1_ratio(s).value == 9_000.0 / 13_000.0
    assert eos_ratio(s).value == 0.5
    assert w1_cpu_ratio(s).value == 25.0 / 21.0
    assert w1_ratio(s).text() == "0.82 (per repetition 0.80–0.90)"


def test_w2_bound_is_the_smaller_of_c_over_sleep_and_the_raw_loop() -> None:
    """W2's bound at C is min(C / 20 ms, raw W2 loop at C); without the raw loop, C / 20 ms alone."""
    s = suite(
        runs(W2, w2_variant(RAW, 64), "msg_s", [3_100.0, 3_000.0]),
        runs(W2, w2_variant(SERVICE, 64), "msg_s", [2_800.0, 2_900.0]),
        runs(W2, w2_variant(RAW, 256), "msg_s", [9_000.0, 11_000.0]),
        runs(W2, w2_variant(SERVICE, 256), "msg_s", [9_000.0, 9_000.0]),
    )
    assert w2_bound(s, 64)[0] == 3_050.0
    assert w2_bound(s, 256) == (10_000.0, "min(C / 20 ms = 12,800, raw W2 loop 10,000)")
    assert w2_ratio(s, 256).value == 0.9
    assert w2_ratio(s, 256).per_rep == [1.0, 9_000.0 / 11_000.0]
    assert w2_bound(suite(), 256)[0] == 12_800.0


def test_latency_target_uses_the_half_load_run_of_at_least_once() -> None:
    """linger + processing p99 (at least once, 50%) + 50 ms; nothing measured, no target."""
    s = suite(runs(LATENCY, latency_variant(SERVICE, 50), "processing_p99_ms", [1.0, 3.0, 2.0]))
    s.runs += runs(LATENCY, latency_variant(SERVICE_EOS, 50), "processing_p99_ms", [90.0])
    assert latency_target_ms(s) == 5.0 + 2.0 + 50.0
    assert latency_target_ms(suite()) is None


def test_rss_per_thousand_subtracts_idle_and_divides_by_in_flight() -> None:
    """(steady − idle) per 1,000 in flight at each bound; the slope compares bounds of one backlog."""
    s = suite(
        [
            memory(IDLE, 0, 1000, 40.0, 0.0, 41.0),
            memory(backlog_variant(200_000, 1000), 200_000, 1000, 60.0, 1000.0, 70.0),
            memory(backlog_variant(50_000, 1000), 50_000, 1000, 58.0, 990.0, 66.0),
            memory(backlog_variant(200_000, 10_000), 200_000, 10_000, 78.0, 10_000.0, 80.0),
        ]
    )
    rows = rss_per_thousand(s)
    assert [(r.backlog, r.bound) for r in rows] == [(200_000, 10_000), (200_000, 1000), (50_000, 1000)]
    assert rows[0].per_thousand_mb == pytest.approx(3.8)
    assert rows[1].per_thousand_mb == pytest.approx(20.0)
    assert rss_slope(rows) == pytest.approx(2.0)
    assert rss_slope(rows[:1]) is None


def test_targets_are_met_missed_reported_or_not_measured() -> None:
    """Each target is met or missed against its limit; report-only ones have none; unmeasured is None."""
    s = suite(
        runs(W1, RAW, "msg_s", [10_000.0]),
        runs(W1, SERVICE, "msg_s", [9_000.0]),
        runs(W1, SERVICE_EOS, "msg_s", [7_000.0]),
        runs(W1, RAW, "cpu_us_per_record", [20.0]),
        runs(W1, SERVICE, "cpu_us_per_record", [25.0]),
        runs(STARTUP, SERVICE, "first_result_s", [1.2, 1.4, 1.3]),
        runs(STARTUP, RAW, "first_result_s", [0.4]),
    )
    found = {t.key: t for t in targets(s)}
    assert [k for k in found] == [
        "W1", "W1-CPU", "W2-C64", "W2-C256", "latency", "first-result", "memory-peak", "memory-flat",
        "memory-per-1000", "EOS", "EOS-latency",
    ]  # fmt: skip
    assert (found["W1"].met, found["W1-CPU"].met, found["EOS"].met) == (True, False, False)
    assert found["first-result"].met is True
    assert found["first-result"].measured == "1.30 (1.20–1.40) s; raw loop 0.40 s"
    assert found["W2-C64"].met is None and found["latency"].met is None
    assert not found["memory-per-1000"].limit and not found["EOS-latency"].limit


@pytest.mark.parametrize(
    ("large_peak", "flat"),
    [
        pytest.param(150.0, False, id="grows with the backlog"),
        pytest.param(109.0, True, id="within 10 percent"),
        pytest.param(80.0, True, id="smaller at the larger backlog"),
    ],
)
def test_memory_flat_compares_backlogs_at_the_same_bound(large_peak: float, flat: bool) -> None:
    """'Flat': the larger backlog's peak at most 10% above the smaller's, at one bound; idle is left out."""
    s = suite(
        [
            memory(IDLE, 0, 1000, 40.0, 0.0, 40.0),
            memory(backlog_variant(200_000, 1000), 200_000, 1000, 90.0, 1000.0, large_peak),
            memory(backlog_variant(50_000, 1000), 50_000, 1000, 90.0, 1000.0, 100.0),
            memory(backlog_variant(200_000, 10_000), 200_000, 10_000, 90.0, 10_000.0, 250.0),
        ]
    )
    found = {t.key: t for t in targets(s)}
    assert found["memory-flat"].met is flat
    assert found["memory-flat"].measured == f"peak at 200,000 ÷ peak at 50,000 = {large_peak / 100:.2f}"
    assert found["memory-peak"].met is True
