"""The latency run: a fixed offered rate into a running service, end-to-end latency per record.

Two clocks per output, both against its input record's create time (ms, the load generator's
clock on this machine), matched by the ``source-partition``/``source-offset`` headers:

* *append*: the output's log-append time (the results topic uses ``LogAppendTime``) -- when the
  broker wrote it; for at-least-once that is when it became readable (the target's measure);
* *visible*: when a ``read_committed`` reader (:mod:`bench.visible`, a child process that runs in
  every latency run, so both guarantees pay for it alike) was handed it -- for exactly-once
  that is after its transaction committed, the latency a downstream consumer sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from bench.broker import (
    INPUT_PARTITIONS,
    Progress,
    create_topics,
    delete_topics,
    new_outputs,
    read_topic,
    unique,
)
from bench.child import Child, raw_loop_argv, service_argv
from bench.runs import PROMPT_BYTES, Bench
from bench.stats import percentile
from bench.visible import read_seen, sources, visible_argv
from stream_service.tools.produce import produce_requests

_LOG_APPEND_TIME = 1  # aiokafka's timestamp_type for LogAppendTime
_READER_TIMEOUT_S = 60.0


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
    raw: bool = False,
) -> dict[str, float]:
    """Offer ``rate`` msg/s for ``duration_s`` to a running service (with ``raw``, to the raw W1
    loop instead: the reference); latency percentiles (ms) of the records created after the first
    ``warmup_s``."""
    input_topic = unique("latency-in")
    await create_topics(bench.bootstrap, {input_topic: INPUT_PARTITIONS})
    outputs = await new_outputs(bench.bootstrap, "latency", log_append_time=True)
    count = max(1, int(rate * duration_s))
    if raw:
        argv = raw_loop_argv(bench.bootstrap, input_topic, outputs, total=count, lineage=True)
    else:
        argv = service_argv(bench.bootstrap, input_topic, outputs, processor="echo", settings=settings)
    child = Child(argv, bench.log_path("latency"))
    seen_path = bench.log_path("visible").with_suffix(".msgpack")
    reader = Child(
        visible_argv(bench.bootstrap, outputs.results, count, seen_path), bench.log_path("visible")
    )
    exactly_once = settings.get("delivery.guarantee") == "exactly_once"
    try:
        await child.start()
        await child.wait_assigned()
        await reader.start()
        await _wait_ready(reader)
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
        await _wait_exit(reader)
        await child.stop()
        created: dict[tuple[int, int], int] = {}
        await read_topic(
            bench.bootstrap, input_topic, lambda p, r: created.__setitem__((p, r.offset), r.timestamp)
        )
        answered = Answered(created, warmup_ms=min(created.values(), default=0) + warmup_s * 1000.0)
        await read_topic(bench.bootstrap, outputs.results, answered.add, read_committed=exactly_once)
        for partition, offset, seen_ms in read_seen(seen_path):
            answered.seen(partition, offset, seen_ms)
    finally:
        await reader.stop()
        await child.stop()
        await delete_topics(bench.bootstrap, [input_topic, outputs.results, outputs.errors])
        seen_path.unlink(missing_ok=True)
    if not answered.append_ms or not answered.visible_ms:
        raise RuntimeError("latency: no results after the warm-up")
    child.log_path.unlink(missing_ok=True)
    reader.log_path.unlink(missing_ok=True)
    return {
        **answered.percentiles("", answered.append_ms),
        **answered.percentiles("visible_", answered.visible_ms),
        "processing_p99_ms": percentile(answered.processing_ms, 99),
        "offered_rate": rate,
        "achieved_rate": stats.rate_per_s,
        "measured": float(len(answered.append_ms)),
    }


async def _wait_ready(reader: Child) -> None:
    async with asyncio.timeout(_READER_TIMEOUT_S):
        while reader.find_event("visible.ready") is None:
            reader.check_alive()
            await asyncio.sleep(0.02)


async def _wait_exit(reader: Child) -> None:
    """The reader stops by itself once it has seen every output; give it a little while."""
    if reader.proc is None:
        return
    try:
        async with asyncio.timeout(_READER_TIMEOUT_S):
            await reader.proc.wait()
    except TimeoutError:
        await reader.stop()  # it writes what it saw; missing records are simply not counted
    if reader.proc.returncode not in (0, None):
        raise RuntimeError(f"the visibility reader failed:\n{reader.tail()}")


class Answered:
    """Latencies of outputs matched to their inputs by the lineage headers, after the warm-up."""

    def __init__(self, created: dict[tuple[int, int], int], warmup_ms: float) -> None:
        self._created = created
        self._warmup_ms = warmup_ms
        self._decode = msgspec.json.Decoder(_Timing).decode
        self.append_ms: list[float] = []
        self.visible_ms: list[float] = []
        self.processing_ms: list[float] = []

    def _created_after_warmup(self, source: tuple[int, int]) -> int | None:
        created = self._created.get(source)
        return None if created is None or created < self._warmup_ms else created

    def add(self, _partition: int, record: Any) -> None:
        """An output as read back from the results topic: its log-append latency."""
        if record.timestamp_type != _LOG_APPEND_TIME:
            raise RuntimeError("the results topic does not use LogAppendTime; latency would be wrong")
        source = sources(record.headers or ())
        if source is None or (created := self._created_after_warmup(source)) is None:
            return
        self.append_ms.append(float(record.timestamp - created))
        self.processing_ms.append(self._decode(record.value).processing_time * 1000.0)

    def seen(self, partition: int, offset: int, seen_ms: float) -> None:
        """An output as the read_committed reader saw it: its visible latency."""
        if (created := self._created_after_warmup((partition, offset))) is not None:
            self.visible_ms.append(seen_ms - created)

    @staticmethod
    def percentiles(prefix: str, values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            f"{prefix}p50_ms": percentile(ordered, 50, presorted=True),
            f"{prefix}p95_ms": percentile(ordered, 95, presorted=True),
            f"{prefix}p99_ms": percentile(ordered, 99, presorted=True),
            f"{prefix}max_ms": ordered[-1],
        }
