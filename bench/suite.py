"""The workloads of the issues, each as interleaved repetitions (A B A B ...) of measured runs.

Every run appends a :class:`~bench.results.Run` to the suite as soon as it finishes, so a failure
later still leaves the earlier numbers in RESULTS.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

from bench import plugins
from bench.broker import INPUT_PARTITIONS, create_topics, delete_topics, unique
from bench.child import raw_loop_argv, service_argv
from bench.latency import latency_run
from bench.results import (
    ASYNC,
    AUDIT,
    CACHE,
    EOS,
    IDLE,
    LATENCY,
    MEMORY,
    NO_METRICS,
    OVERHEADS,
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
    Run,
    Suite,
    backlog_variant,
    latency_variant,
    w2_variant,
)
from bench.runs import ArgvFor, Bench, drain_run, memory_run, produce_backlog, say, startup_run
from bench.stats import interleave
from stream_service.config import load_config


class Scale(NamedTuple):
    """Request counts and durations of one suite."""

    w1: int
    w2: int
    w3: int
    latency_s: float
    startup_backlog: int
    memory_backlogs: tuple[int, ...]
    memory_window_s: float


FULL = Scale(
    w1=200_000,
    w2=40_000,
    w3=30_000,
    latency_s=15.0,
    startup_backlog=1_000,
    memory_backlogs=(200_000, 50_000),
    memory_window_s=15.0,
)
QUICK = Scale(
    w1=20_000,
    w2=4_000,
    w3=4_000,
    latency_s=4.0,
    startup_backlog=200,
    memory_backlogs=(20_000, 5_000),
    memory_window_s=5.0,
)

_DEFAULTS = load_config(environ={}, flags={})  # the service's defaults, read for the targets' terms
W2_CONCURRENCIES = (64, 256)
W3_WORKERS = 2
W3_CPUS = 2
LATENCY_LOADS = (50, 25, 75)  # percent of W1 (b)'s median; exactly once runs at the first
MEMORY_IN_FLIGHT = 1_000  # executor.max_in_flight of the backlog runs (flatness)
MEMORY_LARGE_IN_FLIGHT = _DEFAULTS.executor.max_in_flight  # the default bound: RSS per 1,000 in flight
# Low enough that even the small backlog lasts the whole window (50 ms each: 1,000 msg/s).
MEMORY_CONCURRENCY = 50
LATENCY_WARMUP_S = 1.0
DEFAULT_LATENCY_RATE = 2_000.0  # the 50% rate when W1 did not run in this invocation
LINGER_MS = _DEFAULTS.batch.linger_ms  # the latency target's linger

# What W1 (b) runs with: echo without HRV; the cache off, as in the raw loop (its cost is an
# overhead variant). (e) is the same in exactly-once mode.
ECHO: Mapping[str, object] = {"processor.hrv": False, "cache.enabled": False}
EXACTLY_ONCE: Mapping[str, object] = {**ECHO, "delivery.guarantee": "exactly_once"}
W1_SETTINGS: dict[str, Mapping[str, object]] = {
    SERVICE: ECHO,
    SERVICE_EOS: EXACTLY_ONCE,
    AUDIT: {**ECHO, "observability.audit_requests": True},
    NO_METRICS: {**ECHO, "observability.metrics": False},
    CACHE: {**ECHO, "cache.enabled": True},
    # Every request sampled (the SDK's default sampler), exported over OTLP to the collector at
    # OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4318; see the README).
    TRACING: {**ECHO, "tracing.enabled": True},
}


def w1_variants(selected: set[str]) -> list[str]:
    """W1's variants for the selection: (a), (a'), (b), (e); ``eos`` alone runs (b) and (e);
    the overhead toggles when asked for, with (b) as their baseline."""
    variants = [RAW, RAW_ACKS1, SERVICE, SERVICE_EOS] if W1 in selected else []
    extra = []
    if EOS in selected:
        extra += [SERVICE, SERVICE_EOS]
    if OVERHEADS in selected:
        extra += [SERVICE, AUDIT, NO_METRICS, CACHE, TRACING]
    return variants + [v for v in dict.fromkeys(extra) if v not in variants]


class LatencyVariant(NamedTuple):
    """One latency run's guarantee and load: ``load`` percent of W1 (b)'s rate, or of W1 (e)'s."""

    kind: str
    load: int
    of_own: bool = False

    @property
    def name(self) -> str:
        return latency_variant(self.kind, self.load, of_own=self.of_own)


def latency_variants(selected: set[str]) -> list[LatencyVariant]:
    """The latency runs: at least once at 50/25/75% of W1 (b) and exactly once at 50% of W1 (b)
    (the same offered rate) and at 50% of W1 (e) (its own) with ``latency``; the 50% ones with
    ``eos`` alone."""
    half = [
        LatencyVariant(SERVICE, 50),
        LatencyVariant(SERVICE_EOS, 50),
        LatencyVariant(SERVICE_EOS, 50, True),
    ]
    if LATENCY in selected:
        # The raw W1 loop at the 50% rate: what this machine gives a minimal loop (the reference).
        return [*half, LatencyVariant(SERVICE, 25), LatencyVariant(SERVICE, 75), LatencyVariant(RAW, 50)]
    if EOS in selected:
        return half
    return []


def params(scale: Scale) -> dict[str, object]:
    return {
        "w1_count": scale.w1,
        "w2_count": scale.w2,
        "w2_concurrencies": list(W2_CONCURRENCIES),
        "w2_sleep_ms": plugins.SLEEP20_S * 1000,
        "w3_count": scale.w3,
        "w3_workers": W3_WORKERS,
        "w3_cpus": W3_CPUS,
        "latency_duration_s": scale.latency_s,
        "latency_warmup_s": LATENCY_WARMUP_S,
        "latency_loads": list(LATENCY_LOADS),
        "linger_ms": LINGER_MS,
        "producer_linger_ms": _DEFAULTS.kafka.producer_linger_ms,
        "transaction_interval_ms": _DEFAULTS.delivery.transaction_interval_ms,
        "commit_interval_s": _DEFAULTS.delivery.commit_interval_s,
        "startup_backlog": scale.startup_backlog,
        "memory_in_flight": MEMORY_IN_FLIGHT,
        "memory_large_in_flight": MEMORY_LARGE_IN_FLIGHT,
        "memory_concurrency": MEMORY_CONCURRENCY,
        "memory_sleep_ms": plugins.SLEEP50_S * 1000,
        "memory_window_s": scale.memory_window_s,
    }


def _record(suite: Suite, workload: str, variant: str, rep: int, values: dict[str, float]) -> None:
    suite.runs.append(Run(workload=workload, variant=variant, rep=rep, values=values))
    shown = ", ".join(f"{k}={v:,.1f}" for k, v in values.items())
    say(f"  [{workload} rep {rep + 1}/{suite.reps}] {variant}: {shown}")


def _w1_argv(bootstrap: str, input_topic: str, variant: str, count: int) -> ArgvFor:
    if variant in (RAW, RAW_ACKS1):
        return partial(raw_loop_argv, bootstrap, input_topic, total=count, acks1=variant == RAW_ACKS1)
    return partial(service_argv, bootstrap, input_topic, processor="echo", settings=W1_SETTINGS[variant])


async def run_w1(bench: Bench, suite: Suite, variants: list[str], count: int) -> None:
    """W1 and the overhead variants: one pre-produced input topic per repetition, read by each variant."""
    input_topic = ""
    try:
        for rep, variant in interleave(variants, suite.reps):
            if variant == variants[0]:
                if input_topic:
                    await delete_topics(bench.bootstrap, [input_topic])
                input_topic = await produce_backlog(bench, "w1", count, seed=rep)
            argv_for = _w1_argv(bench.bootstrap, input_topic, variant, count)
            values = await drain_run(bench, f"w1-{variant}", input_topic, count, argv_for)
            _record(suite, W1, variant, rep, values)
    finally:
        if input_topic:
            await delete_topics(bench.bootstrap, [input_topic])


async def run_w2(bench: Bench, suite: Suite, count: int) -> None:
    """The raw W2 loop and the service with the sleep20 plugin, at each concurrency C, on one
    input topic per repetition; HRV and cache off so every request really waits."""
    variants = {w2_variant(kind, c): (kind, c) for c in W2_CONCURRENCIES for kind in (RAW, SERVICE)}
    sleep_ms = plugins.SLEEP20_S * 1000
    input_topic = ""
    try:
        for rep, variant in interleave(list(variants), suite.reps):
            if variant == next(iter(variants)):
                if input_topic:
                    await delete_topics(bench.bootstrap, [input_topic])
                input_topic = await produce_backlog(bench, "w2", count, seed=100 + rep)
            kind, concurrency = variants[variant]
            if kind == RAW:
                argv_for: ArgvFor = partial(
                    raw_loop_argv,
                    bench.bootstrap,
                    input_topic,
                    total=count,
                    concurrency=concurrency,
                    sleep_ms=sleep_ms,
                )
            else:
                settings = {
                    "executor.concurrency": concurrency,
                    "cache.enabled": False,
                    "processor.hrv": False,
                }
                argv_for = partial(
                    service_argv,
                    bench.bootstrap,
                    input_topic,
                    processor="python:bench.plugins:sleep20",
                    settings=settings,
                )
            values = await drain_run(bench, f"w2-{kind}-{concurrency}", input_topic, count, argv_for)
            _record(suite, W2, variant, rep, values)
    finally:
        if input_topic:
            await delete_topics(bench.bootstrap, [input_topic])


async def run_w3(bench: Bench, suite: Suite, count: int) -> None:
    """Resonance (with HRV) with the async vs the process executor, the service held to 2 CPUs."""
    cpus = sorted(os.sched_getaffinity(0))[:W3_CPUS] if hasattr(os, "sched_getaffinity") else None
    executors = {ASYNC: ("async", {}), PROCESS: ("process", {"executor.workers": W3_WORKERS})}
    input_topic = ""
    try:
        for rep, variant in interleave([ASYNC, PROCESS], suite.reps):
            if variant == ASYNC:
                if input_topic:
                    await delete_topics(bench.bootstrap, [input_topic])
                input_topic = await produce_backlog(bench, "w3", count, seed=200 + rep)
            kind, extra = executors[variant]
            argv_for = partial(
                service_argv,
                bench.bootstrap,
                input_topic,
                processor="resonance",
                executor=kind,
                settings={"cache.enabled": False, **extra},
            )
            values = await drain_run(bench, f"w3-{variant}", input_topic, count, argv_for, cpus=cpus)
            _record(suite, W3, variant, rep, values)
    finally:
        if input_topic:
            await delete_topics(bench.bootstrap, [input_topic])


def latency_rate(suite: Suite, override: float | None) -> tuple[float, str]:
    """The 50% rate: half of W1 (b)'s median throughput, unless given or W1 did not run."""
    if override is not None:
        return override, "given with --latency-rate"
    w1 = suite.median(W1, SERVICE, "msg_s")
    if w1 is None:
        return DEFAULT_LATENCY_RATE, "default: W1 did not run"
    return 0.5 * w1, "50% of W1 (b) median"


async def run_latency(
    bench: Bench, suite: Suite, scale: Scale, override: float | None, variants: list[LatencyVariant]
) -> None:
    half, source = latency_rate(suite, override)
    suite.params["latency_rate"] = half
    suite.params["latency_rate_source"] = source
    eos = suite.median(W1, SERVICE_EOS, "msg_s")
    if eos is not None:
        suite.params["latency_rate_eos"] = 0.5 * eos
    else:
        variants = [v for v in variants if not v.of_own]  # no W1 (e) in this run to take 50% of
    names = {v.name: v for v in variants}
    say(f"latency: 50% load is {half:,.0f} msg/s ({source}), {scale.latency_s:g} s per run")
    for rep, variant in interleave(list(names), suite.reps):
        kind, load, of_own = names[variant]
        base = 0.5 * eos if of_own and eos is not None else half
        values = await latency_run(
            bench,
            rate=base * load / 50.0,
            duration_s=scale.latency_s,
            warmup_s=LATENCY_WARMUP_S,
            seed=300 + rep,
            settings=W1_SETTINGS.get(kind, {}),
            raw=kind == RAW,
        )
        _record(suite, LATENCY, variant, rep, {"load_percent": float(load), **values})


async def run_startup(bench: Bench, suite: Suite, scale: Scale) -> None:
    """Time to first result of the raw loop and the service, on one small pre-produced backlog."""
    backlog = scale.startup_backlog
    input_topic = await produce_backlog(bench, "startup", backlog, seed=500)
    argv = {
        RAW: partial(raw_loop_argv, bench.bootstrap, input_topic, total=backlog),
        SERVICE: partial(service_argv, bench.bootstrap, input_topic, processor="echo", settings=ECHO),
    }
    try:
        for rep, variant in interleave([RAW, SERVICE], suite.reps):
            values = await startup_run(bench, f"startup-{variant}", input_topic, argv[variant])
            _record(suite, STARTUP, variant, rep, values)
    finally:
        await delete_topics(bench.bootstrap, [input_topic])


async def run_memory(bench: Bench, suite: Suite, scale: Scale) -> None:
    """Idle RSS, RSS with backlogs of two sizes at a bound of 1,000 in flight, and with the largest
    backlog at the default bound; the input topics are produced once and read by fresh groups."""
    large, *others = sorted(scale.memory_backlogs, reverse=True)
    topics: dict[int, str] = {}
    try:
        empty = unique("mem-empty-in")
        await create_topics(bench.bootstrap, {empty: INPUT_PARTITIONS})
        topics[0] = empty
        for backlog in (large, *others):
            topics[backlog] = await produce_backlog(bench, "mem", backlog, seed=400 + len(topics))
        variants = {IDLE: (0, MEMORY_IN_FLIGHT)}
        for backlog in (large, *others):
            variants[backlog_variant(backlog, MEMORY_IN_FLIGHT)] = (backlog, MEMORY_IN_FLIGHT)
        variants[backlog_variant(large, MEMORY_LARGE_IN_FLIGHT)] = (large, MEMORY_LARGE_IN_FLIGHT)
        for rep, variant in interleave(list(variants), suite.reps):
            backlog, bound = variants[variant]
            settings = {
                "executor.max_in_flight": bound,
                "executor.concurrency": MEMORY_CONCURRENCY,
                "cache.enabled": False,
                "processor.hrv": False,
            }
            values = await memory_run(
                bench, "mem", topics[backlog], window_s=scale.memory_window_s, settings=settings
            )
            _record(
                suite,
                MEMORY,
                variant,
                rep,
                {"backlog": float(backlog), "in_flight_bound": float(bound), **values},
            )
    finally:
        await delete_topics(bench.bootstrap, list(topics.values()))


async def run_selected(
    bench: Bench, suite: Suite, selected: set[str], scale: Scale, latency_override: float | None
) -> None:
    """Run the selected workloads in report order (W1 first: latency derives its rate from it)."""
    if variants := w1_variants(selected):
        await run_w1(bench, suite, variants, scale.w1)
    if W2 in selected:
        await run_w2(bench, suite, scale.w2)
    if W3 in selected:
        await run_w3(bench, suite, scale.w3)
    if latencies := latency_variants(selected):
        await run_latency(bench, suite, scale, latency_override, latencies)
    if STARTUP in selected:
        await run_startup(bench, suite, scale)
    if MEMORY in selected:
        await run_memory(bench, suite, scale)
