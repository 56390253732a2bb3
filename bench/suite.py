"""The workloads of the issue, each as interleaved repetitions (A B A B ...) of measured runs.

Every run appends a :class:`~bench.results.Run` to the suite as soon as it finishes, so a failure
later still leaves the earlier numbers in RESULTS.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

from bench import plugins
from bench.broker import delete_topics
from bench.child import raw_loop_argv, service_argv
from bench.results import (
    ASYNC,
    AUDIT,
    CACHE,
    LATENCY,
    MEMORY,
    NO_METRICS,
    OVERHEADS,
    PROCESS,
    RAW,
    SERVICE,
    TRACING,
    W1,
    W2,
    W3,
    Run,
    Suite,
)
from bench.runs import Bench, drain_run, latency_run, memory_run, produce_backlog, say
from bench.stats import interleave


class Scale(NamedTuple):
    """Request counts and durations of one suite."""

    w1: int
    w2: int
    w3: int
    latency_s: float
    memory_backlogs: tuple[int, ...]
    memory_window_s: float


FULL = Scale(
    w1=200_000, w2=20_000, w3=30_000, latency_s=20.0, memory_backlogs=(200_000, 50_000), memory_window_s=20.0
)
QUICK = Scale(
    w1=20_000, w2=5_000, w3=4_000, latency_s=5.0, memory_backlogs=(20_000, 5_000), memory_window_s=5.0
)

W2_CONCURRENCY = 256
W3_WORKERS = 2
W3_CPUS = 2
MEMORY_IN_FLIGHT = 1_000
# Low enough that even the small backlog lasts the whole window (50 ms each: 1,000 msg/s).
MEMORY_CONCURRENCY = 50
LATENCY_WARMUP_S = 1.0
DEFAULT_LATENCY_RATE = 2_000.0  # when W1 did not run in this invocation to derive it from
LINGER_MS = 5.0  # batch.linger_ms default: the latency target's linger

# What W1 (b) runs with: echo without HRV; the cache off, as in the raw loop (its cost is an
# overhead variant).
ECHO: Mapping[str, object] = {"processor.hrv": False, "cache.enabled": False}
W1_SETTINGS: dict[str, Mapping[str, object]] = {
    SERVICE: ECHO,
    AUDIT: {**ECHO, "observability.audit_requests": True},
    NO_METRICS: {**ECHO, "observability.metrics": False},
    CACHE: {**ECHO, "cache.enabled": True},
    # Every request sampled (the SDK's default sampler), exported over OTLP to the collector at
    # OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4318; see the README).
    TRACING: {**ECHO, "tracing.enabled": True},
}


def w1_variants(selected: set[str]) -> list[str]:
    """W1's variants for the selection: (a) and (b), plus the overhead toggles when asked for."""
    variants = [RAW, SERVICE] if W1 in selected else []
    if OVERHEADS in selected:
        variants += [v for v in (SERVICE, AUDIT, NO_METRICS, CACHE, TRACING) if v not in variants]
    return variants


def params(scale: Scale) -> dict[str, object]:
    return {
        "w1_count": scale.w1,
        "w2_count": scale.w2,
        "w2_concurrency": W2_CONCURRENCY,
        "w2_sleep_ms": plugins.SLEEP20_S * 1000,
        "w3_count": scale.w3,
        "w3_workers": W3_WORKERS,
        "w3_cpus": W3_CPUS,
        "latency_duration_s": scale.latency_s,
        "latency_warmup_s": LATENCY_WARMUP_S,
        "linger_ms": LINGER_MS,
        "memory_in_flight": MEMORY_IN_FLIGHT,
        "memory_concurrency": MEMORY_CONCURRENCY,
        "memory_sleep_ms": plugins.SLEEP50_S * 1000,
        "memory_window_s": scale.memory_window_s,
    }


def _record(suite: Suite, workload: str, variant: str, rep: int, values: dict[str, float]) -> None:
    suite.runs.append(Run(workload=workload, variant=variant, rep=rep, values=values))
    shown = ", ".join(f"{k}={v:,.1f}" for k, v in values.items())
    say(f"  [{workload} rep {rep + 1}/{suite.reps}] {variant}: {shown}")


async def run_w1(bench: Bench, suite: Suite, variants: list[str], count: int) -> None:
    """W1 and the overhead variants: one pre-produced input topic per repetition, read by each variant."""
    input_topic = ""
    try:
        for rep, variant in interleave(variants, suite.reps):
            if variant == variants[0]:
                if input_topic:
                    await delete_topics(bench.bootstrap, [input_topic])
                input_topic = await produce_backlog(bench, "w1", count, seed=rep)
            if variant == RAW:
                argv_for = partial(raw_loop_argv, bench.bootstrap, input_topic, total=count)
            else:
                argv_for = partial(
                    service_argv,
                    bench.bootstrap,
                    input_topic,
                    processor="echo",
                    settings=W1_SETTINGS[variant],
                )
            values = await drain_run(bench, f"w1-{variant}", input_topic, count, argv_for)
            _record(suite, W1, variant, rep, values)
    finally:
        if input_topic:
            await delete_topics(bench.bootstrap, [input_topic])


async def run_w2(bench: Bench, suite: Suite, count: int) -> None:
    """The sleep20 plugin at concurrency C; HRV and cache off so every request really waits."""
    settings = {"executor.concurrency": W2_CONCURRENCY, "cache.enabled": False, "processor.hrv": False}
    for rep, _ in interleave([SERVICE], suite.reps):
        input_topic = await produce_backlog(bench, "w2", count, seed=100 + rep)
        argv_for = partial(
            service_argv,
            bench.bootstrap,
            input_topic,
            processor="python:bench.plugins:sleep20",
            settings=settings,
        )
        try:
            values = await drain_run(bench, "w2", input_topic, count, argv_for)
        finally:
            await delete_topics(bench.bootstrap, [input_topic])
        _record(suite, W2, SERVICE, rep, values)


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
    """The offered rate: 50% of W1 (b)'s median throughput, unless given or W1 did not run."""
    if override is not None:
        return override, "given with --latency-rate"
    w1 = suite.median(W1, SERVICE, "msg_s")
    if w1 is None:
        return DEFAULT_LATENCY_RATE, "default: W1 did not run"
    return 0.5 * w1, "50% of W1 (b) median"


async def run_latency(bench: Bench, suite: Suite, scale: Scale, override: float | None) -> None:
    rate, source = latency_rate(suite, override)
    suite.params["latency_rate"] = rate
    suite.params["latency_rate_source"] = source
    say(f"latency: offering {rate:,.0f} msg/s for {scale.latency_s:g} s ({source})")
    for rep, _ in interleave([SERVICE], suite.reps):
        values = await latency_run(
            bench,
            rate=rate,
            duration_s=scale.latency_s,
            warmup_s=LATENCY_WARMUP_S,
            seed=300 + rep,
            settings=ECHO,
        )
        _record(suite, LATENCY, SERVICE, rep, values)


async def run_memory(bench: Bench, suite: Suite, scale: Scale) -> None:
    settings = {
        "executor.max_in_flight": MEMORY_IN_FLIGHT,
        "executor.concurrency": MEMORY_CONCURRENCY,
        "cache.enabled": False,
        "processor.hrv": False,
    }
    variants = {f"backlog {n:,}": n for n in scale.memory_backlogs}
    for rep, variant in interleave(list(variants), suite.reps):
        backlog = variants[variant]
        say(f"memory: producing a backlog of {backlog:,}")
        input_topic = await produce_backlog(bench, "mem", backlog, seed=400 + rep)
        try:
            values = await memory_run(
                bench, "mem", input_topic, window_s=scale.memory_window_s, settings=settings
            )
        finally:
            await delete_topics(bench.bootstrap, [input_topic])
        _record(suite, MEMORY, variant, rep, {"backlog": float(backlog), **values})


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
    if LATENCY in selected:
        await run_latency(bench, suite, scale, latency_override)
    if MEMORY in selected:
        await run_memory(bench, suite, scale)
