"""One measured run of each kind: drain a backlog (W1, W2, W3), time to first result, memory.

(The offered-rate latency run is :mod:`bench.latency`.)

Each run gets fresh results/errors topics and a fresh consumer group, starts the process under
test as a child, measures it from outside, stops it and deletes its output topics.

Clock: a run starts when the child logs ``partitions.assigned`` (the log line's own timestamp)
and ends when the measuring side first sees the group's committed input offsets equal the
input's end offsets (polled every 20 ms) -- commits follow acknowledgements, so that is "the
last result acknowledged and its offset committed". The same definition times the raw loop.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

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
    cpu_at_assigned: float | None = None
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
                if cpu_at_assigned is None and child.scan() is not None and (sample := child.usage()):
                    cpu_at_assigned = sample["cpu_s"]  # the CPU of starting up is not the records'
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
    cpu_s = usage.get("cpu_s", 0.0)
    return {
        "msg_s": total / elapsed,
        "msg_s_acked": total / ((acked_at or committed_at) - started),
        "elapsed_s": elapsed,
        "cpu_s": cpu_s,
        "cpu_us_per_record": (cpu_s - (cpu_at_assigned or 0.0)) / total * 1e6,
        "peak_rss_mb": max(peak_rss, usage.get("hwm_mb", 0.0)),
    }


async def startup_run(bench: Bench, name: str, input_topic: str, argv_for: ArgvFor) -> dict[str, float]:
    """Time to first result: from spawning the child to the log-append time of its first output.

    ``input_topic`` holds a small backlog, so there is work the moment the child has joined;
    the output's LogAppendTime is the broker's clock on this machine, the spawn time ours.
    """
    outputs = await new_outputs(bench.bootstrap, name, log_append_time=True)
    child = Child(argv_for(outputs), bench.log_path(name))
    first: list[int] = []
    try:
        async with Progress(bench.bootstrap, input_topic, outputs) as progress:
            await child.start()
            deadline = time.monotonic() + _JOIN_TIMEOUT_S
            while await progress.output_end() < 1:
                if child.proc is not None and child.proc.returncode not in (None, 0):
                    child.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: no result after {_JOIN_TIMEOUT_S:g} s:\n{child.tail()}")
                await asyncio.sleep(_POLL_S)
        await child.stop()
        assigned = child.scan()
        await read_topic(bench.bootstrap, outputs.results, lambda _p, r: first.append(r.timestamp))
    finally:
        await child.stop()
        await delete_topics(bench.bootstrap, [outputs.results, outputs.errors])
    if child.started_at is None or assigned is None or not first:
        raise RuntimeError(f"{name}: no partitions.assigned line or no result in {child.log_path}")
    child.log_path.unlink(missing_ok=True)
    return {
        "first_result_s": min(first) / 1000.0 - child.started_at,
        "assigned_s": assigned - child.started_at,
    }


async def memory_run(
    bench: Bench, name: str, input_topic: str, *, window_s: float, settings: Mapping[str, object]
) -> dict[str, float]:
    """RSS of a service working through a backlog (or idle, with an empty input), sampled every
    100 ms until ``window_s`` after it joined: the peak, the steady state (median of the second
    half of the window) and the in-flight requests then (its metrics); how many it committed."""
    outputs = await new_outputs(bench.bootstrap, name)
    argv = service_argv(
        bench.bootstrap, input_topic, outputs, processor="python:bench.plugins:sleep50", settings=settings
    )
    child = Child(argv, bench.log_path(name))
    peak = 0.0
    hwm = 0.0
    steady: list[float] = []
    in_flight: list[float] = []
    try:
        async with Progress(bench.bootstrap, input_topic, outputs) as progress:
            await child.start()
            end: float | None = None
            join_deadline = time.time() + _JOIN_TIMEOUT_S
            port: int | None = None
            while end is None or time.time() < end:
                child.check_alive()
                if end is None and time.time() > join_deadline:
                    raise TimeoutError(f"{name}: no partitions.assigned within {_JOIN_TIMEOUT_S:g} s")
                if sample := child.usage():
                    peak, hwm = max(peak, sample["rss_mb"]), sample["hwm_mb"]
                    if end is not None and time.time() > end - window_s / 2:
                        steady.append(sample["rss_mb"])
                        if port is None and (line := child.find_event("ops.listening")):
                            port = int(line["port"])
                        if (
                            port is not None
                            and (value := await scrape_gauge(port, IN_FLIGHT_GAUGE)) is not None
                        ):
                            in_flight.append(value)
                if end is None and (assigned := child.scan()) is not None:
                    end = assigned + window_s
                await asyncio.sleep(0.1)
            processed = await progress.committed()
    finally:
        await child.stop()
        await delete_topics(bench.bootstrap, [outputs.results, outputs.errors])
    child.log_path.unlink(missing_ok=True)
    # VmHWM catches a spike between samples (main process only); the samples include children.
    values = {"peak_rss_mb": max(peak, hwm), "hwm_mb": hwm, "processed": float(processed)}
    if steady:
        values["steady_rss_mb"] = statistics.median(steady)
    if in_flight:
        values["in_flight"] = statistics.median(in_flight)
    return values


IN_FLIGHT_GAUGE = "stream_service_in_flight_requests"


async def scrape_gauge(port: int, name: str, timeout_s: float = 1.0) -> float | None:
    """The value of an unlabelled gauge on the child's ``/metrics`` page, None when unreadable."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                await writer.drain()
                body = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return None
    return gauge_value(body.decode(errors="replace"), name)


def gauge_value(exposition: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` in Prometheus text exposition, or None."""
    for line in exposition.splitlines():
        metric, _, value = line.partition(" ")
        if metric == name:
            try:
                return float(value.split()[0])
            except (ValueError, IndexError):
                return None
    return None
