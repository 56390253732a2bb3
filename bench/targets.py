"""The targets of issue 14 (performance) and issue 12 (exactly once), judged from one Suite.

Every target is a ratio or a value measured in the same run: medians over the interleaved
repetitions, with the spread (per-repetition ratios of the interleaved pairs, or min–max).
Pure and unit-tested (``tests/unit/test_bench_targets.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

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
    Suite,
    latency_variant,
    w2_variant,
)
from bench.stats import paired_ratios, ratio

W1_TARGET_RATIO = 0.85  # stream_service ÷ raw loop, msg/s
W1_CPU_TARGET = 1.2  # stream_service ÷ raw loop, CPU per record (at most)
W2_TARGET_RATIO = 0.9  # of min(C / 20 ms, raw W2 loop at C)
LATENCY_SLACK_MS = 50.0
LATENCY_LOAD = 50  # percent of W1 (b) at which the latency target applies
FIRST_RESULT_TARGET_S = 1.5
MEMORY_LIMIT_MB = 300.0
MEMORY_FLAT_TOLERANCE = 0.10  # "flat": the large backlog's peak at most 10% above the small one's
EOS_TARGET_RATIO = 0.8  # exactly once ÷ at least once, msg/s (issue 12's aim)


class Ratio(NamedTuple):
    """A ratio of medians and the per-repetition ratios of the interleaved pairs."""

    value: float | None
    per_rep: list[float]

    def text(self) -> str:
        if self.value is None:
            return "–"
        out = f"{self.value:.2f}"
        if len(self.per_rep) > 1:
            out += f" (per repetition {min(self.per_rep):.2f}–{max(self.per_rep):.2f})"
        return out


class Target(NamedTuple):
    key: str  # short and stable: the heading of its explanation in RESULTS.md
    name: str
    measured: str
    met: bool | None  # None: not measured in this run (or, with ``limit`` False, nothing to meet)
    limit: bool = True  # False: reported, no limit to meet


def ratio_of(suite: Suite, workload: str, top: str, bottom: str, key: str) -> Ratio:
    """``top`` ÷ ``bottom`` of ``key``: the ratio of the medians, and per interleaved repetition."""
    return Ratio(
        ratio(suite.median(workload, top, key), suite.median(workload, bottom, key)),
        paired_ratios(suite.values(workload, top, key), suite.values(workload, bottom, key)),
    )


def w1_ratio(suite: Suite) -> Ratio:
    """(b) ÷ (a): stream_service over the raw loop with identical delivery settings."""
    return ratio_of(suite, W1, SERVICE, RAW, "msg_s")


def w1_cpu_ratio(suite: Suite) -> Ratio:
    """CPU per record, (b) ÷ (a)."""
    return ratio_of(suite, W1, SERVICE, RAW, "cpu_us_per_record")


def w1_acks1_ratio(suite: Suite) -> Ratio:
    """(b) ÷ (a'): stream_service over the acks=1, non-idempotent raw loop."""
    return ratio_of(suite, W1, SERVICE, RAW_ACKS1, "msg_s")


def eos_ratio(suite: Suite) -> Ratio:
    """(e) ÷ (b): exactly once over at least once."""
    return ratio_of(suite, W1, SERVICE_EOS, SERVICE, "msg_s")


def w2_bound(suite: Suite, concurrency: int) -> tuple[float, str]:
    """min(C / sleep, the raw W2 loop's median at C): the best W2 could do here, and how."""
    sleep_s = float(suite.params.get("w2_sleep_ms", 20.0)) / 1000.0
    by_concurrency = concurrency / sleep_s
    raw = suite.median(W2, w2_variant(RAW, concurrency), "msg_s")
    if raw is None:
        return by_concurrency, f"C / {sleep_s * 1000:g} ms = {by_concurrency:,.0f} (raw W2 loop not run)"
    return min(raw, by_concurrency), (
        f"min(C / {sleep_s * 1000:g} ms = {by_concurrency:,.0f}, raw W2 loop {raw:,.0f})"
    )


def w2_ratio(suite: Suite, concurrency: int, key: str = "msg_s") -> Ratio:
    """The service's ``key`` at C over the bound; per repetition against that repetition's raw run."""
    sleep_s = float(suite.params.get("w2_sleep_ms", 20.0)) / 1000.0
    bound, _ = w2_bound(suite, concurrency)
    service = suite.values(W2, w2_variant(SERVICE, concurrency), key)
    raw = suite.values(W2, w2_variant(RAW, concurrency), "msg_s")
    bounds = [min(r, concurrency / sleep_s) for r in raw] or [bound] * len(service)
    med = suite.median(W2, w2_variant(SERVICE, concurrency), key)
    return Ratio(ratio(med, bound), paired_ratios(service, bounds))


def latency_target_ms(suite: Suite) -> float | None:
    """linger + processing time (p99, measured at 50% load, at least once) + 50 ms."""
    processing = suite.median(LATENCY, latency_variant(SERVICE, LATENCY_LOAD), "processing_p99_ms")
    if processing is None:
        return None
    return float(suite.params.get("linger_ms", 5.0)) + processing + LATENCY_SLACK_MS


class RssPerThousand(NamedTuple):
    """RSS per 1,000 in-flight requests at one bound: (steady RSS − idle RSS) ÷ (in flight ÷ 1,000)."""

    variant: str
    backlog: int
    bound: int
    in_flight: float
    steady_mb: float
    idle_mb: float
    per_thousand_mb: float


def rss_per_thousand(suite: Suite) -> list[RssPerThousand]:
    """For each memory run with a measured in-flight count, largest bound first."""
    idle = suite.median(MEMORY, IDLE, "steady_rss_mb")
    out = []
    for variant in suite.variants(MEMORY):
        steady = suite.median(MEMORY, variant, "steady_rss_mb")
        in_flight = suite.median(MEMORY, variant, "in_flight")
        bound = suite.median(MEMORY, variant, "in_flight_bound")
        backlog = suite.median(MEMORY, variant, "backlog")
        if variant == IDLE or None in (idle, steady, in_flight, bound, backlog) or not in_flight:
            continue
        assert idle is not None and steady is not None and in_flight is not None
        assert bound is not None and backlog is not None
        per = (steady - idle) / (in_flight / 1000.0)
        out.append(RssPerThousand(variant, int(backlog), int(bound), in_flight, steady, idle, per))
    return sorted(out, key=lambda r: (-r.bound, -r.backlog))


def rss_slope(rows: Sequence[RssPerThousand]) -> float | None:
    """MB per 1,000 in flight between the smallest and largest in-flight count of the backlog that
    ran at the largest bound (fixed costs such as fetch buffers cancel), None without two."""
    if not rows:
        return None
    same = [r for r in rows if r.backlog == rows[0].backlog]
    low, high = min(same, key=lambda r: r.in_flight), max(same, key=lambda r: r.in_flight)
    if high.in_flight - low.in_flight < 1.0:
        return None
    return (high.steady_mb - low.steady_mb) / ((high.in_flight - low.in_flight) / 1000.0)


def spread(suite: Suite, workload: str, variant: str, key: str, fmt: str = "{:,.1f}") -> str:
    """``median (min–max)`` of ``key``, or – when not measured."""
    summary = suite.summary(workload, variant, key)
    if summary is None:
        return "–"
    text = fmt.format(summary.median)
    if summary.n > 1:
        text += f" ({fmt.format(summary.min)}–{fmt.format(summary.max)})"
    return text


def targets(suite: Suite) -> list[Target]:
    """Each target of the issues with its measured value; ``met`` is None when not measured."""
    w1_name = f"W1: stream_service ≥ {W1_TARGET_RATIO} × raw loop (identical delivery settings), msg/s"
    out = [
        _at_least("W1", w1_name, w1_ratio(suite), W1_TARGET_RATIO),
        _at_most("W1-CPU", f"W1: CPU per record ≤ {W1_CPU_TARGET} × raw loop's", w1_cpu_ratio(suite),
                 W1_CPU_TARGET),
    ]  # fmt: skip
    for concurrency in _w2_concurrencies(suite):
        out.append(
            _at_least(
                f"W2-C{concurrency}",
                f"W2, C = {concurrency}: ≥ {W2_TARGET_RATIO} × min(C / 20 ms, raw W2 loop)",
                w2_ratio(suite, concurrency),
                W2_TARGET_RATIO,
            )
        )
    out.append(_latency(suite))
    out.append(_first_result(suite))
    out += _memory(suite)
    out.append(_at_least("EOS", f"Exactly once: msg/s ≥ {EOS_TARGET_RATIO} × at least once (W1)",
                         eos_ratio(suite), EOS_TARGET_RATIO))  # fmt: skip
    out.append(_eos_latency(suite))
    return out


def _eos_latency(suite: Suite) -> Target:
    own = spread(suite, LATENCY, latency_variant(SERVICE_EOS, LATENCY_LOAD, of_own=True), "visible_p99_ms")
    same = spread(suite, LATENCY, latency_variant(SERVICE_EOS, LATENCY_LOAD), "visible_p99_ms")
    alo = spread(suite, LATENCY, latency_variant(SERVICE, LATENCY_LOAD), "visible_p99_ms")
    parts = []
    if own != "–":
        parts.append(f"p99 {own} ms at 50% of W1 (e)")
    if same != "–":
        parts.append(f"{same} ms at 50% of W1 (b)")
    measured = "; ".join(parts) + f"; at least once {alo} ms" if parts else "–"
    name = "Exactly once: p99 at 50% load, visible to read_committed"
    return Target("EOS-latency", name, measured, None, limit=False)


def _w2_concurrencies(suite: Suite) -> list[int]:
    concurrencies = suite.params.get("w2_concurrencies")
    if isinstance(concurrencies, list):
        return [int(c) for c in concurrencies]
    return [int(suite.params.get("w2_concurrency", 256))]


def _at_least(key: str, name: str, value: Ratio, limit: float) -> Target:
    return Target(key, name, value.text(), None if value.value is None else value.value >= limit)


def _at_most(key: str, name: str, value: Ratio, limit: float) -> Target:
    return Target(key, name, value.text(), None if value.value is None else value.value <= limit)


def _latency(suite: Suite) -> Target:
    variant = latency_variant(SERVICE, LATENCY_LOAD)
    p99, bound = suite.median(LATENCY, variant, "p99_ms"), latency_target_ms(suite)
    met = None if p99 is None or bound is None else p99 <= bound
    measured = (
        "–" if p99 is None else f"p99 {spread(suite, LATENCY, variant, 'p99_ms')} ms vs {bound:,.1f} ms"
    )
    reference = latency_variant(RAW, LATENCY_LOAD)
    if p99 is not None and suite.median(LATENCY, reference, "p99_ms") is not None:
        measured += f"; raw loop at the same rate p99 {spread(suite, LATENCY, reference, 'p99_ms')} ms"
    return Target("latency", "Latency: p99 ≤ linger + processing p99 + 50 ms at 50% load", measured, met)


def _first_result(suite: Suite) -> Target:
    service = suite.median(STARTUP, SERVICE, "first_result_s")
    met = None if service is None else service <= FIRST_RESULT_TARGET_S
    measured = "–"
    if service is not None:
        measured = (
            f"{spread(suite, STARTUP, SERVICE, 'first_result_s', '{:.2f}')} s; "
            f"raw loop {spread(suite, STARTUP, RAW, 'first_result_s', '{:.2f}')} s"
        )
    return Target(
        "first-result", f"Time to first result ≤ {FIRST_RESULT_TARGET_S} s after start", measured, met
    )


def _memory(suite: Suite) -> list[Target]:
    bound = float(suite.params.get("memory_in_flight", 1000))
    peaks = {v: suite.median(MEMORY, v, "peak_rss_mb") for v in suite.variants(MEMORY) if v != IDLE}
    known = [p for p in peaks.values() if p is not None]
    under = None if not known else max(known) < MEMORY_LIMIT_MB
    measured = f"largest peak {max(known):,.0f} MB" if known else "–"
    out = [Target("memory-peak", f"Memory: peak RSS < {MEMORY_LIMIT_MB:.0f} MB", measured, under)]
    by_backlog = sorted(
        (backlog, peak)
        for v, peak in peaks.items()
        if peak is not None
        and (backlog := suite.median(MEMORY, v, "backlog")) is not None
        and suite.median(MEMORY, v, "in_flight_bound") in (None, bound)
    )
    flat, measured = None, "–"
    if len(by_backlog) >= 2:
        (small, small_peak), (large, large_peak) = by_backlog[0], by_backlog[-1]
        # One-sided: the question is whether memory grows with the backlog, not run-to-run noise.
        flat = large_peak <= small_peak * (1 + MEMORY_FLAT_TOLERANCE)
        measured = f"peak at {large:,.0f} ÷ peak at {small:,.0f} = {large_peak / small_peak:.2f}"
    name = (
        f"Memory: flat in backlog size (larger backlog's peak ≤ {1 + MEMORY_FLAT_TOLERANCE:.2f} × smaller's)"
    )
    out.append(Target("memory-flat", name, measured, flat))
    rows = rss_per_thousand(suite)
    measured = "–"
    if rows:
        top = rows[0]
        measured = f"{top.per_thousand_mb:.1f} MB at {top.in_flight:,.0f} in flight"
        if (slope := rss_slope(rows)) is not None:
            measured += f"; slope between bounds {slope:.1f} MB"
    out.append(
        Target("memory-per-1000", "Memory: RSS per 1,000 in-flight requests", measured, None, limit=False)
    )
    return out
