"""Bounded topic scans: read a topic from a start to the end offsets captured when the scan began,
so a scan terminates on a topic that is still being written to."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_service.clients import for_client
from stream_service.errors import ToolError
from stream_service.tools.progress import WorkMeter

__all__ = ["Isolation", "ScanStats", "parse_time", "partition_bounds", "scan_topic", "topic_partitions"]

Isolation = Literal["read_uncommitted", "read_committed"]

# A scan gives up when no record arrives for this long although the end offsets are not reached
# (e.g. the partition leader is unavailable); it then reports itself incomplete.
IDLE_TIMEOUT_S = 15.0
_POLL_TIMEOUT_MS = 500
_UNKNOWN_TOPIC_OR_PARTITION = 3  # Kafka protocol error code
_MAX_POLL_RECORDS = 10_000

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now_s: Callable[[], float] = time.time) -> int:
    """A time bound in epoch milliseconds from ISO 8601 (UTC if no offset) or ``15m``/``2h`` ago."""
    text = text.strip()
    if match := _RELATIVE.match(text):
        return int((now_s() - float(match[1]) * _UNIT_S[match[2]]) * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ToolError(
            f"invalid time {text!r}: use ISO 8601 (2024-05-01T12:00:00Z) or a duration ago (30s, 15m, 2h, 1d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class ScanStats(msgspec.Struct, kw_only=True):
    """What a scan read: records per partition, the time span, and whether it reached its end."""

    topic: str
    records: int = 0
    partitions: dict[int, tuple[int, int]] = {}  # partition -> [start, end) scanned
    first_timestamp_ms: int | None = None
    last_timestamp_ms: int | None = None
    complete: bool = True


async def topic_partitions(options: Mapping[str, Any], topic: str) -> list[int]:
    """The partition numbers of ``topic``; raises ToolError when it does not exist."""
    # The admin client, because a consumer's public API only learns partitions by subscribing.
    admin = AIOKafkaAdminClient(**for_client("admin", options))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] == _UNKNOWN_TOPIC_OR_PARTITION or not described["partitions"]:
        raise ToolError(f"topic {topic!r} does not exist")
    if described["error_code"]:
        raise ToolError(f"cannot describe topic {topic!r}: Kafka error code {described['error_code']}")
    return sorted(p["partition"] for p in described["partitions"])


async def partition_bounds(
    options: Mapping[str, Any], consumer: Any, topic: str
) -> tuple[list[Any], dict[Any, int], dict[Any, int]]:
    """Partitions of ``topic`` with their beginning and end offsets, captured now."""
    tps = [TopicPartition(topic, p) for p in await topic_partitions(options, topic)]
    beginning = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    return tps, beginning, end


async def scan_topic(
    options: Mapping[str, Any],
    topic: str,
    on_record: Callable[[Any], None],
    *,
    partitions: Collection[int] | None = None,
    from_offset: int | None = None,
    to_offset: int | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    ranges: Mapping[int, tuple[int, int]] | None = None,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
    isolation: Isolation = "read_uncommitted",
    meter: WorkMeter | None = None,
) -> ScanStats:
    """Call ``on_record`` for every record of ``topic`` in bounds, in offset order per partition.

    Bounds: ``from_offset`` (inclusive) and ``to_offset`` (exclusive) apply to every partition,
    clamped to the partition's beginning and to the end offset captured at start; ``since_ms``
    starts at the first record at or after that time, ``until_ms`` stops a partition at its
    first record after it. ``ranges`` (partition -> [start, end)) replaces the other bounds.
    Reads outside any consumer group: nothing is committed. With ``isolation="read_committed"``
    only records of committed transactions are read, up to the last stable offset. A ``meter``
    is told the offsets in bounds, then the records read as they come.
    """
    consumer = AIOKafkaConsumer(
        **for_client(
            "consumer",
            options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=_MAX_POLL_RECORDS,
            isolation_level=isolation,
        )
    )
    await consumer.start()
    try:
        tps, beginning, end = await partition_bounds(options, consumer, topic)
        if ranges is not None:
            partitions = ranges.keys()
        if partitions is not None:
            unknown = set(partitions) - {tp.partition for tp in tps}
            if unknown:
                raise ToolError(f"topic {topic!r} has no partition {sorted(unknown)}")
            tps = [tp for tp in tps if tp.partition in partitions]
        start = {tp: max(beginning[tp], from_offset or 0) for tp in tps}
        stop = {tp: end[tp] if to_offset is None else min(end[tp], to_offset) for tp in tps}
        if ranges is not None:
            start = {tp: ranges[tp.partition][0] for tp in tps}
            stop = {tp: ranges[tp.partition][1] for tp in tps}
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                start[tp] = max(start[tp], found[tp].offset if found.get(tp) is not None else stop[tp])
        stats = ScanStats(topic=topic, partitions={tp.partition: (start[tp], stop[tp]) for tp in tps})
        consumer.assign(tps)
        pending = {tp for tp in tps if start[tp] < stop[tp]}
        for tp in pending:
            consumer.seek(tp, start[tp])
        in_bounds = sum(stop[tp] - start[tp] for tp in pending)
        if meter is not None:
            meter.expect(in_bounds)
        await _drain(consumer, pending, stop, until_ms, on_record, stats, idle_timeout_s, meter)
        if meter is not None and stats.complete:
            meter.advance(in_bounds - stats.records)  # offset gaps, and what --until left out
        return stats
    finally:
        await consumer.stop()


async def _drain(
    consumer: Any,
    pending: set[Any],
    stop: Mapping[Any, int],
    until_ms: int | None,
    on_record: Callable[[Any], None],
    stats: ScanStats,
    idle_timeout_s: float,
    meter: WorkMeter | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=_POLL_TIMEOUT_MS)
        for tp, records in batches.items():
            if tp not in pending:
                continue
            for record in records:
                if record.offset >= stop[tp] or (until_ms is not None and record.timestamp > until_ms):
                    pending.discard(tp)
                    break
                stats.records += 1
                ts = record.timestamp
                if stats.first_timestamp_ms is None or ts < stats.first_timestamp_ms:
                    stats.first_timestamp_ms = ts
                if stats.last_timestamp_ms is None or ts > stats.last_timestamp_ms:
                    stats.last_timestamp_ms = ts
                on_record(record)
            if records:
                last_progress = loop.time()
                if meter is not None:
                    meter.advance(len(records))
        # Offsets may have gaps (transaction markers, compaction): the position, not the last
        # record, tells whether a partition reached its end.
        for tp in list(pending):
            if await consumer.position(tp) >= stop[tp]:
                pending.discard(tp)
        if pending and loop.time() - last_progress > idle_timeout_s:
            stats.complete = False
            return
