"""Render a :class:`~bench.results.Suite` as ``bench/RESULTS.md``: tables and where we stand on targets.

Pure: the same Suite always renders the same text (tested in ``tests/unit/test_bench_report.py``).
Re-render saved results with ``python -m bench.report bench/RESULTS.json > bench/RESULTS.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from bench.results import (
    AUDIT,
    CACHE,
    LATENCY,
    MEMORY,
    NO_METRICS,
    PROCESS,
    RAW,
    SERVICE,
    TRACING,
    W1,
    W2,
    W3,
    Suite,
    decode,
)
from bench.stats import Summary, paired_ratios, ratio, summarize

# Targets from the issue.
W1_TARGET_RATIO = 0.8
W2_TARGET_RATIO = 0.9
LATENCY_SLACK_MS = 50.0
MEMORY_LIMIT_MB = 300.0
MEMORY_FLAT_TOLERANCE = 0.10  # "flat": the large backlog's peak at most 10% above the small one's

_EXPLAIN = "missed; where the time goes, with the profile, is in [ANALYSIS.md](ANALYSIS.md)."
_VARIANT_NAMES = {
    RAW: "(a) raw aiokafka loop",
    SERVICE: "(b) stream_service",
    AUDIT: "stream_service, audit_requests=true",
    NO_METRICS: "stream_service, metrics=false",
    CACHE: "stream_service, cache.enabled=true",
    TRACING: "stream_service, tracing.enabled=true",
}


class Target(NamedTuple):
    name: str
    measured: str
    met: bool | None  # None: not measured in this run


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _cells(summary: Summary | None, digits: int = 0) -> list[str]:
    if summary is None:
        return ["–", "–", "–"]
    return [_num(summary.median, digits), _num(summary.min, digits), _num(summary.max, digits)]


def _ratio_text(value: float | None, per_rep: Sequence[float]) -> str:
    if value is None:
        return "–"
    text = f"{value:.2f}"
    if len(per_rep) > 1:
        text += f" (per repetition {min(per_rep):.2f}–{max(per_rep):.2f})"
    return text


def w1_ratio(suite: Suite) -> tuple[float | None, list[float]]:
    """b/a: ratio of the medians, and the per-repetition ratios of the interleaved pairs."""
    a, b = suite.values(W1, RAW, "msg_s"), suite.values(W1, SERVICE, "msg_s")
    med = ratio(summarize(b).median if b else None, summarize(a).median if a else None)
    return med, paired_ratios(b, a)


def w2_bound(suite: Suite) -> tuple[float, str]:
    """min(W1 ceiling, C / sleep): the best W2 could do, and how it was obtained."""
    concurrency = float(suite.params.get("w2_concurrency", 256))
    sleep_s = float(suite.params.get("w2_sleep_ms", 20.0)) / 1000.0
    by_concurrency = concurrency / sleep_s
    ceiling = suite.median(W1, RAW, "msg_s")
    if ceiling is None:
        return by_concurrency, f"C / {sleep_s * 1000:g} ms = {by_concurrency:,.0f} (W1 not run: no ceiling)"
    bound = min(ceiling, by_concurrency)
    return bound, f"min(W1 ceiling {ceiling:,.0f}, C / {sleep_s * 1000:g} ms = {by_concurrency:,.0f})"


def latency_target_ms(suite: Suite) -> float | None:
    """linger + processing time (p99, measured) + 50 ms."""
    processing = suite.median(LATENCY, SERVICE, "processing_p99_ms")
    if processing is None:
        return None
    return float(suite.params.get("linger_ms", 5.0)) + processing + LATENCY_SLACK_MS


def targets(suite: Suite) -> list[Target]:
    """Each target of the issue with the measured value; ``met`` is None when it was not measured."""
    out: list[Target] = []
    r1, _ = w1_ratio(suite)
    out.append(
        Target(
            f"W1: stream_service ≥ {W1_TARGET_RATIO} of the raw aiokafka loop",
            _opt(r1),
            _ge(r1, W1_TARGET_RATIO),
        )
    )
    w2 = suite.median(W2, SERVICE, "msg_s")
    r2 = ratio(w2, w2_bound(suite)[0]) if w2 is not None else None
    out.append(
        Target(f"W2: ≥ {W2_TARGET_RATIO} of min(W1 ceiling, C / 20 ms)", _opt(r2), _ge(r2, W2_TARGET_RATIO))
    )
    p99, bound = suite.median(LATENCY, SERVICE, "p99_ms"), latency_target_ms(suite)
    met = None if p99 is None or bound is None else p99 <= bound
    measured = "–" if p99 is None else f"p99 {p99:,.1f} ms vs {_num(bound, 1)} ms"
    out.append(Target("Latency: p99 ≤ linger + processing time + 50 ms at 50% load", measured, met))
    peaks = {v: suite.median(MEMORY, v, "peak_rss_mb") for v in suite.variants(MEMORY)}
    known = [p for p in peaks.values() if p is not None]
    under = None if not known else max(known) < MEMORY_LIMIT_MB
    measured = ", ".join(f"{v}: {_num(p, 0)} MB" for v, p in peaks.items()) or "–"
    out.append(Target(f"Memory: peak RSS < {MEMORY_LIMIT_MB:.0f} MB", measured, under))
    by_backlog = sorted(
        (backlog, peak)
        for v, peak in peaks.items()
        if peak is not None and (backlog := suite.median(MEMORY, v, "backlog")) is not None
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
    out.append(Target(name, measured, flat))
    return out


def _opt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def render(suite: Suite) -> str:
    """The whole RESULTS.md."""
    lines = ["# Benchmark results", ""]
    if suite.quick:
        lines += [
            "> **Quick smoke run** (`--quick`): small counts; the numbers say it works, not how fast.",
            "",
        ]
    lines += _context(suite)
    for workload, section in (
        (W1, _w1),
        ("overheads", _overheads),
        (W2, _w2),
        (W3, _w3),
        (LATENCY, _latency),
        (MEMORY, _memory),
    ):
        lines += section(suite) if _ran(suite, workload) else []
    lines += _targets(suite)
    return "\n".join(lines).rstrip() + "\n"


def _ran(suite: Suite, workload: str) -> bool:
    if workload == "overheads":
        return any(v in suite.variants(W1) for v in (AUDIT, NO_METRICS, CACHE, TRACING))
    return bool(suite.variants(workload))


def _context(suite: Suite) -> list[str]:
    m = suite.machine
    lines = [
        f"Run {suite.started_at} – {suite.finished_at} ({suite.wall_s / 60:.1f} min), "
        f"{suite.reps} interleaved repetition(s) per workload (A B A B …); "
        "every cell is over those repetitions.",
        "",
        f"Command: `{suite.command}`",
        "",
        f"Broker: {suite.broker} at `{suite.bootstrap}`.",
        "",
    ]
    if m is not None:
        load = " / ".join(f"{x:.2f}" for x in m.load_avg_start) or "–"
        load_end = " / ".join(f"{x:.2f}" for x in m.load_avg_end) or "–"
        lines += _table(
            ["machine", ""],
            [
                ["CPU", f"{m.cpu_model} × {m.nproc}"],
                ["RAM", f"{m.ram_gb:.1f} GB"],
                ["kernel", m.kernel],
                ["load average (1/5/15 min) at start / end", f"{load} · {load_end}"],
                ["Python", m.python],
                ["Kafka", m.kafka],
                ["aiokafka", m.aiokafka],
                ["msgspec", m.msgspec],
                ["stream_service", m.stream_service],
            ],
        )
    lines += [
        "Throughput is records ÷ (time all input offsets were committed − time the consumer logged "
        "`partitions.assigned`), measured outside the process under test from the group's committed "
        "offsets (polled every 20 ms). Commits follow acknowledgements, so this includes the last "
        "acknowledgement and up to one `delivery.commit_interval_s` (1 s) wait for the final commit; "
        "the *acked* column ends instead when the last result is in the results topic.",
        "",
    ]
    return lines


def _throughput_rows(suite: Suite, workload: str, names: Callable[[str], str]) -> list[list[str]]:
    rows = []
    for variant in suite.variants(workload):
        rows.append(
            [
                names(variant),
                *_cells(suite.summary(workload, variant, "msg_s")),
                _num(suite.median(workload, variant, "msg_s_acked")),
                _num(suite.median(workload, variant, "cpu_s"), 1),
                _num(suite.median(workload, variant, "peak_rss_mb")),
            ]
        )
    return rows


_THROUGHPUT_HEADER = ["variant", "msg/s median", "min", "max", "msg/s acked (median)", "CPU s", "peak RSS MB"]


def _w1(suite: Suite) -> list[str]:
    count = suite.params.get("w1_count", "?")
    rows = [r for r in _throughput_rows(suite, W1, _name) if r[0] in (_name(RAW), _name(SERVICE))]
    value, per_rep = w1_ratio(suite)
    return [
        f"## W1 — throughput ({_count(count)} JSON requests of ~300 B, 8 partitions, "
        "echo, HRV off, cache off)",
        "",
        *_table(_THROUGHPUT_HEADER, rows),
        f"**b/a = {_ratio_text(value, per_rep)}**",
        "",
    ]


def _overheads(suite: Suite) -> list[str]:
    base = suite.median(W1, SERVICE, "msg_s")
    rows = []
    for variant in (SERVICE, AUDIT, NO_METRICS, CACHE, TRACING):
        if variant not in suite.variants(W1):
            continue
        med = suite.median(W1, variant, "msg_s")
        change = ratio(med, base)
        rows.append(
            [
                _name(variant),
                *_cells(suite.summary(W1, variant, "msg_s")),
                "baseline" if variant == SERVICE else ("–" if change is None else f"{(change - 1):+.1%}"),
                _num(suite.median(W1, variant, "cpu_s"), 1),
            ]
        )
    return [
        "## Overheads — W1 with one feature toggled (same input topic per repetition)",
        "",
        "Baseline (b) runs with metrics on (the default), audit lines off (the default) and the cache off.",
        "",
        *_table(["variant", "msg/s median", "min", "max", "vs baseline", "CPU s"], rows),
    ]


def _w2(suite: Suite) -> list[str]:
    bound, how = w2_bound(suite)
    summary = suite.summary(W2, SERVICE, "msg_s")
    value = ratio(summary.median if summary else None, bound)
    per_rep = [v / bound for v in suite.values(W2, SERVICE, "msg_s")]
    acked = ratio(suite.median(W2, SERVICE, "msg_s_acked"), bound)
    return [
        f"## W2 — I/O-bound ({_count(suite.params.get('w2_count', '?'))} requests, each awaiting "
        f"{suite.params.get('w2_sleep_ms', 20)} ms, async executor, concurrency C = "
        f"{suite.params.get('w2_concurrency', 256)}, cache off)",
        "",
        *_table(_THROUGHPUT_HEADER, _throughput_rows(suite, W2, lambda _: "stream_service")),
        f"Bound: {how}.",
        "",
        f"**msg/s ÷ bound = {_ratio_text(value, per_rep)}**; to the last acknowledgement: {_opt(acked)}.",
        "",
    ]


def _w3(suite: Suite) -> list[str]:
    names = {
        "async": "async executor",
        PROCESS: f"process executor, {suite.params.get('w3_workers', 2)} workers",
    }
    rows = _throughput_rows(suite, W3, lambda v: names.get(v, v))
    value = ratio(suite.median(W3, PROCESS, "msg_s"), suite.median(W3, "async", "msg_s"))
    return [
        f"## W3 — CPU-bound ({_count(suite.params.get('w3_count', '?'))} requests, resonance processor "
        f"with HRV, cache off, service limited to {suite.params.get('w3_cpus', 2)} CPUs)",
        "",
        *_table(_THROUGHPUT_HEADER, rows),
        f"process ÷ async = {_opt(value)}. CPU s includes the worker processes.",
        "",
    ]


def _latency(suite: Suite) -> list[str]:
    rows = [
        ["p50 ms", *_cells(suite.summary(LATENCY, SERVICE, "p50_ms"), 1)],
        ["p99 ms", *_cells(suite.summary(LATENCY, SERVICE, "p99_ms"), 1)],
        ["max ms", *_cells(suite.summary(LATENCY, SERVICE, "max_ms"), 1)],
        ["processing time p99 ms", *_cells(suite.summary(LATENCY, SERVICE, "processing_p99_ms"), 2)],
        ["achieved input rate msg/s", *_cells(suite.summary(LATENCY, SERVICE, "achieved_rate"))],
    ]
    offered = suite.params.get("latency_rate")
    source = suite.params.get("latency_rate_source", "")
    return [
        f"## Latency — fixed offered rate {_num(offered)} msg/s ({source}), echo, HRV off, cache off",
        "",
        "End-to-end = result's log-append timestamp − input record's create timestamp (ms resolution, "
        "one clock: the broker and the load generator share the machine), matched by the "
        f"`source-partition`/`source-offset` headers; the first {suite.params.get('latency_warmup_s', 1)} s "
        f"of input is warm-up and not counted; {suite.params.get('latency_duration_s', '?')} s of input per "
        "repetition.",
        "",
        *_table(["", "median", "min", "max"], rows),
        f"Target: linger ({suite.params.get('linger_ms', 5)} ms) + processing p99 + 50 ms = "
        f"{_num(latency_target_ms(suite), 1)} ms.",
        "",
    ]


def _memory(suite: Suite) -> list[str]:
    rows = []
    for variant in suite.variants(MEMORY):
        rows.append(
            [
                _count(int(suite.median(MEMORY, variant, "backlog") or 0)),
                *_cells(suite.summary(MEMORY, variant, "peak_rss_mb")),
                _num(suite.median(MEMORY, variant, "hwm_mb")),
                _num(suite.median(MEMORY, variant, "processed")),
            ]
        )
    return [
        f"## Memory — peak RSS with a backlog, slow processor ({suite.params.get('memory_sleep_ms', 50)} ms, "
        f"concurrency {suite.params.get('memory_concurrency', '?')}), "
        f"executor.max_in_flight = {suite.params.get('memory_in_flight', 1000)}",
        "",
        f"RSS of the service process (and any children) sampled every 100 ms from its start until "
        f"{suite.params.get('memory_window_s', '?')} s after `partitions.assigned`; VmHWM is the kernel's "
        "high-water mark of the main process.",
        "",
        *_table(["backlog", "peak RSS MB median", "min", "max", "VmHWM MB", "processed in window"], rows),
    ]


def _targets(suite: Suite) -> list[str]:
    rows = []
    for target in targets(suite):
        status = {None: "not measured", True: "**met**", False: "**missed**"}[target.met]
        rows.append([target.name, target.measured, status])
    lines = ["## Targets", "", *_table(["target", "measured (medians)", "status"], rows)]
    for target in targets(suite):
        if target.met is False:
            lines += [f"- {target.name}: {_EXPLAIN}"]
    return lines


def _name(variant: str) -> str:
    return _VARIANT_NAMES.get(variant, variant)


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.report RESULTS.json", file=sys.stderr)
        return 2
    sys.stdout.write(render(decode(Path(args[0]).read_bytes())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
