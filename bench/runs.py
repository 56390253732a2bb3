"""One measured run of each kind: drain a backlog (W1, W2, W3), offered-rate latency, memory.

Each run gets fresh results/errors topics and a fresh consumer group, starts the process under
test as a child, measures it from outside, stops it and deletes its output topics.

Clock: a run starts when the child logs ``partitions.assigned`` (the log line's own timestamp)
and ends when the measuring side first sees the group's committed input offsets equal the
input's end offsets (polled every 20 ms) -- commits follow acknowledgements, so that is "the
last result acknowledged and its offset committed". The same definition times the raw loop.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bench.broker import (
    INPUT_PARTITIONS,
    Outputs,
    Progress,
    create_topics,
    delete_topics,
    new_outputs,
    read_topic,
    unique,
)
from bench.child import Child, service_argv
from bench.stats import percentile
from stream_service.tools.produce import produce_requests

PROMPT_BYTES = 170  # with the other fields, a request record of about 300 bytes
_POLL_S = 0.02
_USAGE_EVERY = 5  # progress polls between CPU/RSS samples (about every 100 ms)
_JOIN_TIMEOUT_S = 120.0
_LOG_APPEND_TIME = 1  # aiokafka's timestamp_type for LogAppendTime


@dataclass(frozen=True)
class Bench:
    """Where runs happen: the broker, and a directory for the children's logs."""

    bootstrap: str
    log_dir: Path

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{unique(name)}.log"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def produce_backlog(bench: Bench, name: str, count: int, *, seed: int) -> str:
    """A fresh 8-partition input topic holding ``count`` generated requests of ~300 bytes."""
    topic = unique(f"{name}-in")
    await create_topics(bench.bootstrap, {topic: INPUT_PARTITIONS})
    stats = await produce_requests(bench.bootstrap, topic, count, prompt_bytes=PROMPT_BYTES, seed=seed)
    say(f"{name}: produced {count:,} requests in {stats.elapsed_s:.1f} s")
    return topic


ArgvFor = Callable[[Outputs], list[str]]


async def drain_run(
    bench: Bench, name: str, input_topic: str, total: int, argv_for: ArgvFor, *, cpus: list[int] | None = None
) -> dict[str, float]:
    """Let the child process all ``total`` records of ``input_topic``; return throughput and usage."""
    outputs = await new_outputs(bench.bootstrap, name)
    child = Child(argv_for(outputs), bench.log_path(name))
    timeout_s = 60.0 + total / 500.0
    acked_at = committed_at = None
    peak_rss = 0.0
    usage: dict[str, float] = {}
    try:
        async with Progress(bench.bootstrap, input_topic, outputs) as progress:
            target = await progress.input_end()
            await child.start(cpus)
            deadline = time.monotonic() + timeout_s
            polls = 0
            while committed_at is None:
                if child.proc is not None and child.proc.returncode not in (None, 0):
                    child.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: not done after {timeout_s:g} s:\n{child.tail()}")
                if polls % _USAGE_EVERY == 0 and (sample := child.usage()):
                    usage, peak_rss = sample, max(peak_rss, sample["rss_mb"])
                polls += 1
                if acked_at is None and await progress.output_end() >= target:
                    acked_at = time.time()
                if await progress.committed() >= target:
                    committed_at = time.time()
                else:
                    await asyncio.sleep(_POLL_S)
            usage = child.usage() or usage
        await child.stop()
        started = child.scan()
        if started is None:
            raise RuntimeError(f"{name}: no partitions.assigned line in {child.log_path}")
    finally:
        await child.stop()
        await delete_topics(bench.bootstrap, [outputs.results, outputs.errors])
    elapsed = committed_at - started
    child.log_path.unlink(missing_ok=True)
    return {
        "msg_s": total / elapsed,
        "msg_s_acked": total / ((acked_at or committed_at) - started),
        "elapsed_s": elapsed,
        "cpu_s": usage.get("cpu_s", 0.0),
        "peak_rss_mb": max(peak_rss, usage.get("hwm_mb", 0.0)),
    }


class _Timing(msgspec.Struct):
    processing_time: float = 0.0


async def latency_run(
    bench: Bench,
    *,
    rate: float,
    duration_s: float,
    warmup_s: float,
    seed: int,
    settings: Mapping[str, object],
) -> dict[str, float]:
    """Offer ``rate`` msg/s for ``duration_s`` to a running service; end-to-end latency percentiles.

    Latency is the result's log-append time minus its input's create time (both in ms).
    """
    input_topic = unique("latency-in")
    await create_topics(bench.bootstrap, {input_topic: INPUT_PARTITIONS})
    outputs = await new_outputs(bench.bootstrap, "latency", log_append_time=True)
    count = max(1, int(rate * duration_s))
    argv = service_argv(bench.bootstrap, input_topic, outputs, processor="echo", settings=settings)
    child = Child(argv, bench.log_path("latency"))
    try:
        await child.start()
        await child.wait_assigned()
        stats = await produce_requests(
            bench.bootstrap, input_topic, count, rate=rate, prompt_bytes=PROMPT_BYTES, seed=seed
        )
        async with Progress(bench.bootstrap, input_topic, outputs) as progress:
            deadline = time.monotonic() + 60.0 + count / 500.0
            while await progress.committed() < count:
                child.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"latency: results incomplete:\n{child.tail()}")
                await asyncio.sleep(0.1)
        await child.stop()
        created: dict[tuple[int, int], int] = {}
        await read_topic(
            bench.bootstrap, input_topic, lambda p, r: created.__setitem__((p, r.offset), r.timestamp)
        )
        answered = _Answered(created, warmup_ms=min(created.values(), default=0) + warmup_s * 1000.0)
        await read_topic(bench.bootstrap, outputs.results, answered.add)
    finally:
        await child.stop()
        await delete_topics(bench.bootstrap, [input_topic, outputs.results, outputs.errors])
    if not answered.latencies_ms:
        raise RuntimeError("latency: no results after the warm-up")
    child.log_path.unlink(missing_ok=True)
    lat = sorted(answered.latencies_ms)
    return {
        "p50_ms": percentile(lat, 50, presorted=True),
        "p99_ms": percentile(lat, 99, presorted=True),
        "max_ms": lat[-1],
        "processing_p99_ms": percentile(answered.processing_ms, 99),
        "offered_rate": rate,
        "achieved_rate": stats.rate_per_s,
        "measured": float(len(lat)),
    }


class _Answered:
    """Collects latencies of results matched to their inputs by the lineage headers."""

    def __init__(self, created: dict[tuple[int, int], int], warmup_ms: float) -> None:
        self._created = created
        self._warmup_ms = warmup_ms
        self._decode = msgspec.json.Decoder(_Timing).decode
        self.latencies_ms: list[float] = []
        self.processing_ms: list[float] = []

    def add(self, _partition: int, record: Any) -> None:
        if record.timestamp_type != _LOG_APPEND_TIME:
            raise RuntimeError("the results topic does not use LogAppendTime; latency would be wrong")
        headers = dict(record.headers or ())  # aiokafka: [(str, bytes), ...]
        source = (int(headers["source-partition"]), int(headers["source-offset"]))
        created = self._created.get(source)
        if created is None or created < self._warmup_ms:
            return
        self.latencies_ms.append(float(record.timestamp - created))
        self.processing_ms.append(self._decode(record.value).processing_time * 1000.0)


async def memory_run(
    bench: Bench, name: str, input_topic: str, *, window_s: float, settings: Mapping[str, object]
) -> dict[str, float]:
    """Peak RSS of a service working through a backlog, sampled every 100 ms until ``window_s``
    after it joined; also how many records it committed in that time."""
    outputs = await new_outputs(bench.bootstrap, name)
    argv = service_argv(
        bench.bootstrap, input_topic, outputs, processor="python:bench.plugins:sleep50", settings=settings
    )
    child = Child(argv, bench.log_path(name))
    peak = 0.0
    hwm = 0.0
    try:
        async with Progress(bench.bootstrap, input_topic, outputs) as progress:
            await child.start()
            end: float | None = None
            join_deadline = time.time() + _JOIN_TIMEOUT_S
            while end is None or time.time() < end:
                child.check_alive()
                if end is None and time.time() > join_deadline:
                    raise TimeoutError(f"{name}: no partitions.assigned within {_JOIN_TIMEOUT_S:g} s")
                if sample := child.usage():
                    peak, hwm = max(peak, sample["rss_mb"]), sample["hwm_mb"]
                if end is None and (assigned := child.scan()) is not None:
                    end = assigned + window_s
                await asyncio.sleep(0.1)
            processed = await progress.committed()
    finally:
        await child.stop()
        await delete_topics(bench.bootstrap, [outputs.results, outputs.errors])
    child.log_path.unlink(missing_ok=True)
    # VmHWM catches a spike between samples (main process only); the samples include children.
    return {"peak_rss_mb": max(peak, hwm), "hwm_mb": hwm, "processed": float(processed)}
