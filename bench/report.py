"""Render a :class:`~bench.results.Suite` as ``bench/RESULTS.md``: the targets first, then the tables.

Pure: the same Suite (and kept explanations) always renders the same text (tested in
``tests/unit/test_bench_report.py``). Re-render saved results with
``python -m bench.report bench/RESULTS.json > bench/RESULTS.new.md`` (it keeps the explanations
written in the RESULTS.md beside the JSON; the scale-out block is to be copied over by hand;
``python -m bench`` keeps both itself).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bench import explanations
from bench.results import (
    AUDIT,
    CACHE,
    IDLE,
    LATENCY,
    MEMORY,
    NO_METRICS,
    PROCESS,
    RAW,
    RAW_ACKS1,
    SERVICE,
    SERVICE_EOS,
    STARTUP,
    TRACING,
    W1,
    W2,
    W3,
    Suite,
    decode,
    latency_variant,
    w2_variant,
)
from bench.stats import Summary, ratio
from bench.targets import (
    LATENCY_LOAD,
    eos_ratio,
    latency_target_ms,
    rss_per_thousand,
    rss_slope,
    spread,
    targets,
    w1_acks1_ratio,
    w1_cpu_ratio,
    w1_ratio,
    w2_bound,
    w2_ratio,
)

_VARIANT_NAMES = {
    RAW: "(a) raw aiokafka loop, identical delivery settings",
    RAW_ACKS1: "(a') raw aiokafka loop, acks=1, no idempotence",
    SERVICE: "(b) stream_service, at least once",
    SERVICE_EOS: "(e) stream_service, exactly once",
    AUDIT: "stream_service, audit_requests=true",
    NO_METRICS: "stream_service, metrics=false",
    CACHE: "stream_service, cache.enabled=true",
    TRACING: "stream_service, tracing.enabled=true",
}
_STATUS = {None: "not measured", True: "**met**", False: "**missed**"}


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


def render(suite: Suite, kept: Mapping[str, str] | None = None) -> str:
    """The whole RESULTS.md; ``kept`` are the explanations already written (see :mod:`bench.explanations`)."""
    lines = ["# Benchmark results", ""]
    if suite.quick:
        lines += [
            "> **Quick smoke run** (`--quick`): small counts; the numbers say it works, not how fast.",
            "",
        ]
    lines += [
        f"Run {suite.started_at} – {suite.finished_at} ({suite.wall_s / 60:.1f} min), "
        f"{suite.reps} interleaved repetition(s) per workload (A B A B …); "
        "every cell is over those repetitions.",
        "",
        f"Command: `{suite.command}`",
        "",
    ]
    lines += _targets(suite, kept or {})
    lines += _context(suite)
    for workload, section in (
        (W1, _w1),
        ("overheads", _overheads),
        (W2, _w2),
        (W3, _w3),
        (LATENCY, _latency),
        ("eos", _eos),
        (STARTUP, _startup),
        (MEMORY, _memory),
    ):
        lines += section(suite) if _ran(suite, workload) else []
    return "\n".join(lines).rstrip() + "\n"


def _ran(suite: Suite, workload: str) -> bool:
    if workload == "overheads":
        return any(v in suite.variants(W1) for v in (AUDIT, NO_METRICS, CACHE, TRACING))
    if workload == "eos":
        return SERVICE_EOS in suite.variants(W1) or latency_variant(
            SERVICE_EOS, LATENCY_LOAD
        ) in suite.variants(LATENCY)
    return bool(suite.variants(workload))


def _targets(suite: Suite, kept: Mapping[str, str]) -> list[str]:
    found = targets(suite)
    rows = [[t.name, t.measured, _STATUS[t.met] if t.limit else "reported"] for t in found]
    return [
        "## Targets",
        "",
        "Issue 14 (performance) and issue 12 (exactly once). Medians of the interleaved repetitions; "
        "ratios are ratios of medians, with the per-repetition ratios of the interleaved pairs.",
        "",
        *_table(["target", "measured (medians, spread)", "status"], rows),
        *explanations.render(found, kept),
    ]


def _context(suite: Suite) -> list[str]:
    m = suite.machine
    lines = ["## Where and how", "", f"Broker: {suite.broker} at `{suite.bootstrap}`.", ""]
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
        "acknowledgement and up to one `delivery.commit_interval_s` "
        f"({suite.params.get('commit_interval_s', 1)} s) wait for the final commit (exactly once: one "
        f"transaction interval, {suite.params.get('transaction_interval_ms', 100)} ms); the *acked* column "
        "ends instead when the last result is in the results topic. *CPU µs/record* is the process's "
        "CPU time (user + system, with its children) from `partitions.assigned` to the end, per record: "
        "steadier than wall time on a shared machine; *CPU s* is the whole process, start-up included.",
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
                spread(suite, workload, variant, "cpu_us_per_record", "{:,.1f}"),
                _num(suite.median(workload, variant, "peak_rss_mb")),
            ]
        )
    return rows


_THROUGHPUT_HEADER = [
    "variant", "msg/s median", "min", "max", "msg/s acked (median)", "CPU s", "CPU µs/record (min–max)",
    "peak RSS MB",
]  # fmt: skip


def _w1(suite: Suite) -> list[str]:
    count = suite.params.get("w1_count", "?")
    main = (RAW, RAW_ACKS1, SERVICE, SERVICE_EOS)
    rows = [
        r for v, r in zip(suite.variants(W1), _throughput_rows(suite, W1, _name), strict=True) if v in main
    ]
    return [
        f"## W1 — throughput ({_count(count)} JSON requests of ~300 B, 8 partitions, "
        "echo, HRV off, cache off)",
        "",
        "(a) has the service's delivery settings (consumer `read_committed`; producer idempotent, "
        "`acks=all`, 5 ms linger, 256 KiB batches) and commits after every batch; (a') is what a "
        "hand-written consumer does (`acks=1`, no idempotence, `read_uncommitted`).",
        "",
        *_table(_THROUGHPUT_HEADER, rows),
        f"- **b/a = {w1_ratio(suite).text()}** (msg/s)",
        f"- **CPU per record b/a = {w1_cpu_ratio(suite).text()}**",
        f"- b/a' = {w1_acks1_ratio(suite).text()}",
        f"- e/b = {eos_ratio(suite).text()} (exactly once ÷ at least once)",
        "",
    ]


def _overheads(suite: Suite) -> list[str]:
    base = suite.median(W1, SERVICE, "msg_s")
    rows = []
    for variant in (SERVICE, AUDIT, NO_METRICS, CACHE, TRACING):
        if variant not in suite.variants(W1):
            continue
        change = ratio(suite.median(W1, variant, "msg_s"), base)
        rows.append(
            [
                _name(variant),
                *_cells(suite.summary(W1, variant, "msg_s")),
                "baseline" if variant == SERVICE else ("–" if change is None else f"{(change - 1):+.1%}"),
                _num(suite.median(W1, variant, "cpu_us_per_record"), 1),
            ]
        )
    return [
        "## Overheads — W1 with one feature toggled (same input topic per repetition)",
        "",
        "Baseline (b) runs with metrics on (the default), audit lines off (the default) and the cache off.",
        "",
        *_table(["variant", "msg/s median", "min", "max", "vs baseline", "CPU µs/record"], rows),
    ]


def _w2(suite: Suite) -> list[str]:
    def name(variant: str) -> str:
        kind, _, c = variant.partition(" ")
        return f"{'raw W2 loop' if kind == RAW else 'stream_service'}, {c}"

    lines = [
        f"## W2 — I/O-bound ({_count(suite.params.get('w2_count', '?'))} requests, each awaiting "
        f"{suite.params.get('w2_sleep_ms', 20)} ms, async executor, cache off)",
        "",
        "The raw W2 loop: getmany → `asyncio.gather` over the batch under a semaphore of C (each request "
        "awaits 20 ms, then its answer is sent) → await the acknowledgements → commit. The service runs "
        "`python:bench.plugins:sleep20` with `executor.concurrency = C`.",
        "",
        *_table(_THROUGHPUT_HEADER, _throughput_rows(suite, W2, name)),
    ]
    for concurrency in _w2_concurrencies(suite):
        if w2_variant(SERVICE, concurrency) not in suite.variants(W2):
            continue
        _, how = w2_bound(suite, concurrency)
        lines += [
            f"- C = {concurrency}: bound {how}; **service ÷ bound = {w2_ratio(suite, concurrency).text()}**; "
            f"to the last acknowledgement: {w2_ratio(suite, concurrency, 'msg_s_acked').text()}",
        ]
    return [*lines, ""]


def _w2_concurrencies(suite: Suite) -> list[int]:
    found = {int(v.rsplit("=", 1)[1]) for v in suite.variants(W2) if "C=" in v}
    return sorted(found)


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


def _latency_name(variant: str) -> str:
    kind, _, load = variant.partition(" ")
    load = load.replace("% of (e)", "% of W1 (e)")
    if kind == RAW:
        return f"raw aiokafka loop (reference), {load}"
    return f"{'exactly once' if kind == SERVICE_EOS else 'at least once'}, {load}"


def _latency(suite: Suite) -> list[str]:
    rows = []
    for variant in sorted(suite.variants(LATENCY), key=_latency_order):
        rows.append(
            [
                _latency_name(variant),
                _num(suite.median(LATENCY, variant, "offered_rate")),
                *(spread(suite, LATENCY, variant, k) for k in ("p50_ms", "p95_ms", "p99_ms")),
                *(spread(suite, LATENCY, variant, k) for k in ("visible_p50_ms", "visible_p99_ms")),
                _num(suite.median(LATENCY, variant, "processing_p99_ms"), 2),
            ]
        )
    half = suite.params.get("latency_rate")
    source = suite.params.get("latency_rate_source", "")
    return [
        f"## Latency — offered rates of 25/50/75% of W1 (b) (50% = {_num(half)} msg/s, {source}), "
        f"and 50% of W1 (e) ({_num(suite.params.get('latency_rate_eos'))} msg/s), echo, HRV off, cache off",
        "",
        "End-to-end ms against the input record's create time (one clock: the generator and the broker "
        "share the machine), matched by the `source-partition`/`source-offset` headers: *append* is the "
        "result's log-append time (the target's measure for at least once); *visible* is when a "
        "`read_committed` reader process (running in every latency run) was handed it — for exactly once, "
        "after its transaction committed. The first "
        f"{suite.params.get('latency_warmup_s', 1)} s of input is warm-up and not counted; "
        f"{suite.params.get('latency_duration_s', '?')} s of input per run. "
        "Median (min–max) over repetitions.",
        "",
        *_table(
            [
                "guarantee, load",
                "offered msg/s",
                "append p50",
                "append p95",
                "append p99",
                "visible p50",
                "visible p99",
                "processing p99",
            ],
            rows,
        ),  # fmt: skip
        f"Target at 50%: linger ({suite.params.get('linger_ms', 5)} ms, `batch.linger_ms`) + processing p99 "
        f"+ 50 ms = {_num(latency_target_ms(suite), 1)} ms (the producer's own "
        f"{suite.params.get('producer_linger_ms', 5)} ms linger is inside the 50 ms).",
        "",
    ]


def _latency_order(variant: str) -> tuple[bool, bool, bool, int]:
    kind, _, load = variant.partition(" ")
    return (kind == RAW, kind == SERVICE_EOS, "of (e)" in load, int(load.split("%")[0] or 0))


def _eos(suite: Suite) -> list[str]:
    alo = latency_variant(SERVICE, LATENCY_LOAD)
    eos = latency_variant(SERVICE_EOS, LATENCY_LOAD)
    own = latency_variant(SERVICE_EOS, LATENCY_LOAD, of_own=True)

    def both(
        label: str, workload: str, key: str, variants: tuple[str, str], fmt: str = "{:,.1f}"
    ) -> list[str]:
        return [label, *(spread(suite, workload, v, key, fmt) for v in variants)]

    rows = [
        both("W1 msg/s", W1, "msg_s", (SERVICE, SERVICE_EOS), "{:,.0f}"),
        both("W1 CPU µs/record", W1, "cpu_us_per_record", (SERVICE, SERVICE_EOS)),
        both("visible p50 ms, same offered rate (50% of W1 (b))", LATENCY, "visible_p50_ms", (alo, eos)),
        both("visible p99 ms, same offered rate (50% of W1 (b))", LATENCY, "visible_p99_ms", (alo, eos)),
        both("visible p50 ms at 50% of its own W1 rate", LATENCY, "visible_p50_ms", (alo, own)),
        both("visible p99 ms at 50% of its own W1 rate", LATENCY, "visible_p99_ms", (alo, own)),
    ]
    throughput, cpu = eos_ratio(suite), w1_cpu_eos(suite)
    cost = []
    if throughput.value is not None:
        cost.append(f"{1 - throughput.value:.0%} of the throughput (e/b = {throughput.text()})")
    if cpu is not None:
        cost.append(f"{cpu - 1:+.0%} CPU per record")
    base = suite.median(LATENCY, alo, "visible_p99_ms")
    for variant, where in ((own, "at 50% of its own rate"), (eos, "at the same offered rate")):
        if base is not None and (p99 := suite.median(LATENCY, variant, "visible_p99_ms")) is not None:
            cost.append(f"{p99 - base:+,.0f} ms of visible p99 {where}")
    return [
        "## Exactly once vs at least once (issue 12)",
        "",
        "Same run, same input topics: W1 (e) beside (b), and the latency runs in both modes "
        "(`--set delivery.guarantee=exactly_once`: a transaction per input partition, committed every "
        f"`delivery.transaction_interval_ms` = {suite.params.get('transaction_interval_ms', 100)} ms). "
        "Exactly once runs at the offered rate of the at-least-once 50% run, and at 50% of its own W1 "
        "(e) rate: where (e) is well below (b), the first is close to its capacity.",
        "",
        *_table(["", "at least once", "exactly once"], rows),
        f"**Cost of exactly once: {'; '.join(cost) or '–'}.**",
        "",
    ]


def w1_cpu_eos(suite: Suite) -> float | None:
    """CPU per record, (e) ÷ (b)."""
    return ratio(
        suite.median(W1, SERVICE_EOS, "cpu_us_per_record"), suite.median(W1, SERVICE, "cpu_us_per_record")
    )


def _startup(suite: Suite) -> list[str]:
    rows = [
        [
            "raw aiokafka loop" if variant == RAW else "stream_service",
            *_cells(suite.summary(STARTUP, variant, "first_result_s"), 2),
            spread(suite, STARTUP, variant, "assigned_s", "{:.2f}"),
        ]
        for variant in suite.variants(STARTUP)
    ]
    return [
        f"## Time to first result ({_count(suite.params.get('startup_backlog', '?'))} requests waiting, "
        "fresh consumer group)",
        "",
        "From spawning the process to the log-append time of its first output (the broker's clock, on "
        "this machine); *to partitions.assigned* is the part up to the group join (interpreter, imports, "
        "client start, join).",
        "",
        *_table(["process", "first result s median", "min", "max", "to partitions.assigned s"], rows),
    ]


def _memory(suite: Suite) -> list[str]:
    rows = []
    for variant in suite.variants(MEMORY):
        rows.append(
            [
                "idle (empty input)"
                if variant == IDLE
                else _count(int(suite.median(MEMORY, variant, "backlog") or 0)),
                _num(suite.median(MEMORY, variant, "in_flight_bound")),
                *_cells(suite.summary(MEMORY, variant, "peak_rss_mb")),
                spread(suite, MEMORY, variant, "steady_rss_mb"),
                _num(suite.median(MEMORY, variant, "in_flight")),
                _num(suite.median(MEMORY, variant, "processed")),
            ]
        )
    per = rss_per_thousand(suite)
    notes = [
        f"- backlog {r.backlog:,}, bound {r.bound:,}: ({r.steady_mb:,.1f} − idle {r.idle_mb:,.1f} MB) ÷ "
        f"{r.in_flight / 1000:,.2f} = **{r.per_thousand_mb:.1f} MB per 1,000 in flight**"
        for r in per
    ]
    if (slope := rss_slope(per)) is not None:
        notes.append(
            f"- between the two bounds at backlog {per[0].backlog:,} (fixed costs such as fetch buffers "
            f"cancel): {slope:.1f} MB per 1,000 in flight"
            + (
                " — negative: the smaller bound used more memory, so something other than the in-flight "
                "records dominates there"
                if slope < 0
                else ""
            )
        )
    return [
        f"## Memory — RSS with a backlog, slow processor ({suite.params.get('memory_sleep_ms', 50)} ms, "
        f"concurrency {suite.params.get('memory_concurrency', '?')})",
        "",
        f"RSS of the service process (and any children) sampled every 100 ms from its start until "
        f"{suite.params.get('memory_window_s', '?')} s after `partitions.assigned`; peak is the larger of "
        "the samples and the kernel's VmHWM. *Steady* is the median of the samples in the second half of "
        "the window, *in flight* the median of the service's `stream_service_in_flight_requests` gauge "
        "then; the bound is `executor.max_in_flight`.",
        "",
        *_table(
            [
                "backlog",
                "bound",
                "peak RSS MB median",
                "min",
                "max",
                "steady RSS MB (min–max)",
                "in flight",
                "processed in window",
            ],
            rows,
        ),  # fmt: skip
        "RSS per 1,000 in-flight requests = (steady RSS − idle steady RSS) ÷ (in flight ÷ 1,000):",
        "",
        *(notes or ["- not measured"]),
        "",
    ]


def _opt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _name(variant: str) -> str:
    return _VARIANT_NAMES.get(variant, variant)


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.report RESULTS.json", file=sys.stderr)
        return 2
    results = Path(args[0])
    sys.stdout.write(render(decode(results.read_bytes()), explanations.read(results.with_suffix(".md"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
