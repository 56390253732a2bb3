"""How the operator tools read what the service wrote: lineage headers, bounded topic scans, outputs.

Every output record carries ``source-topic``, ``source-partition`` and ``source-offset`` (the
input it answers), ``content-type``, and ``request-id``/``tenant`` when known. A scan reads a
topic from a start to the end offsets captured when it began, so it terminates on a topic that
is still being written to.

Connection settings come from :func:`stream_service.config.load_config` (config file,
environment, then ``--bootstrap-servers``); this module reads no environment itself.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_service.config import Config, load_config
from stream_service.messages import ErrorRecord, Result

__all__ = [
    "EXIT_ERROR",
    "Lineage",
    "OutputDecoder",
    "Outputs",
    "ScanStats",
    "ToolError",
    "add_connection_arguments",
    "client_options",
    "load_jsonl",
    "parse_time",
    "read_outputs",
    "scan_topic",
    "tool_config",
]

SOURCE_TOPIC = "source-topic"
SOURCE_PARTITION = "source-partition"
SOURCE_OFFSET = "source-offset"
REQUEST_ID = "request-id"
TENANT = "tenant"
CONTENT_TYPE = "content-type"
MSGPACK = "application/msgpack"

EXIT_ERROR = 2  # usage, configuration or connection problems (1 is a negative verdict)
# A scan gives up when no record arrives for this long although the end offsets are not reached
# (e.g. the partition leader is unavailable); it then reports itself incomplete.
IDLE_TIMEOUT_S = 15.0
_POLL_TIMEOUT_MS = 500
_UNKNOWN_TOPIC_OR_PARTITION = 3  # Kafka protocol error code
_MAX_POLL_RECORDS = 10_000


class ToolError(Exception):
    """A tool cannot do what was asked (topic missing, bad time bound); the message says why."""


class Lineage(NamedTuple):
    """The input an output record answers, read from its headers."""

    topic: str
    partition: int
    offset: int
    request_id: str | None
    tenant: str | None
    content_type: str


def parse_lineage(headers: Sequence[tuple[str, bytes]]) -> Lineage | None:
    """The lineage of an output record, or ``None`` when a source header is missing or invalid."""
    values = {name: value for name, value in headers}
    try:
        topic = values[SOURCE_TOPIC].decode()
        partition = int(values[SOURCE_PARTITION])
        offset = int(values[SOURCE_OFFSET])
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    request_id = values.get(REQUEST_ID)
    tenant = values.get(TENANT)
    return Lineage(
        topic=topic,
        partition=partition,
        offset=offset,
        request_id=request_id.decode(errors="replace") if request_id is not None else None,
        tenant=tenant.decode(errors="replace") if tenant is not None else None,
        content_type=values.get(CONTENT_TYPE, b"application/json").decode(errors="replace"),
    )


class OutputDecoder:
    """Decodes result and error records, JSON or msgpack as their ``content-type`` header says."""

    def __init__(self) -> None:
        self._json_result = msgspec.json.Decoder(Result)
        self._json_error = msgspec.json.Decoder(ErrorRecord)
        self._msgpack_result = msgspec.msgpack.Decoder(Result)
        self._msgpack_error = msgspec.msgpack.Decoder(ErrorRecord)

    def result(self, value: bytes, content_type: str) -> Result:
        """Raises msgspec.DecodeError when the bytes are not a Result."""
        if content_type == MSGPACK:
            return self._msgpack_result.decode(value)
        return self._json_result.decode(value)

    def error(self, value: bytes, content_type: str) -> ErrorRecord:
        """Raises msgspec.DecodeError when the bytes are not an ErrorRecord."""
        if content_type == MSGPACK:
            return self._msgpack_error.decode(value)
        return self._json_error.decode(value)


def content_type(headers: Sequence[tuple[str, bytes]]) -> str:
    for name, value in headers:
        if name == CONTENT_TYPE:
            return value.decode(errors="replace")
    return "application/json"


# ----------------------------------------------------------------------------------- configuration


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--bootstrap-servers``; the rest of the connection comes from the config."""
    parser.add_argument("--config", dest="config_file", metavar="PATH", help="TOML config file")
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        help="Kafka brokers (default: kafka.bootstrap_servers, env KAFKA_BOOTSTRAP_SERVERS)",
    )


def tool_config(args: argparse.Namespace, topic_flags: Mapping[str, str] | None = None) -> Config:
    """The Config for a tool: file < environment < ``--bootstrap-servers`` and topic flags.

    ``topic_flags`` maps an argparse destination (``results_topic``) to its setting
    (``topics.results``); flags left unset keep the configured value.
    """
    flags: dict[str, object] = {}
    labels: dict[str, str] = {}
    if getattr(args, "bootstrap_servers", None):
        flags["kafka.bootstrap_servers"] = args.bootstrap_servers
        labels["kafka.bootstrap_servers"] = "flag --bootstrap-servers"
    for dest, key in (topic_flags or {}).items():
        value = getattr(args, dest, None)
        if value is not None:
            flags[key] = value
            labels[key] = f"flag --{dest.replace('_', '-')}"
    return load_config(file=getattr(args, "config_file", None), flags=flags, flag_labels=labels)


def client_options(config: Config) -> dict[str, Any]:
    """Connection and security options for aiokafka clients (the service's own mapping)."""
    # Imported here: the service module pulls in the whole engine, which the tools rarely need.
    from stream_service.service import kafka_client_options

    options = kafka_client_options(config)
    options["client_id"] = f"{config.kafka.client_id}-tools"
    return options


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


# ------------------------------------------------------------------------------------------ scanning


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
    admin = AIOKafkaAdminClient(**options)
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
) -> ScanStats:
    """Call ``on_record`` for every record of ``topic`` in bounds, in offset order per partition.

    Bounds: ``from_offset`` (inclusive) and ``to_offset`` (exclusive) apply to every partition,
    clamped to the partition's beginning and to the end offset captured at start; ``since_ms``
    starts at the first record at or after that time, ``until_ms`` stops a partition at its
    first record after it. ``ranges`` (partition -> [start, end)) replaces the other bounds.
    Reads outside any consumer group: nothing is committed.
    """
    consumer = AIOKafkaConsumer(
        **options,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=_MAX_POLL_RECORDS,
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
        await _drain(consumer, pending, stop, until_ms, on_record, stats, idle_timeout_s)
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
        # Offsets may have gaps (transaction markers, compaction): the position, not the last
        # record, tells whether a partition reached its end.
        for tp in list(pending):
            if await consumer.position(tp) >= stop[tp]:
                pending.discard(tp)
        if pending and loop.time() - last_progress > idle_timeout_s:
            stats.complete = False
            return


# ------------------------------------------------------------------------------------ reading outputs


class Outputs(msgspec.Struct, kw_only=True):
    """Decoded results and errors, how many records were skipped, and the wall time they span."""

    records: list[Result | ErrorRecord] = []
    skipped: int = 0  # undecodable records (or tombstones)
    wall_seconds: float | None = None
    incomplete: list[str] = []  # topics whose scan stopped before their end


def load_jsonl(path: Path) -> Outputs:
    """Outputs from a JSONL file, one Result or ErrorRecord per line; raises OSError if unreadable."""
    out = Outputs()
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                raw = msgspec.json.decode(line)
                is_error = isinstance(raw, dict) and (raw.get("success") is False or "error_type" in raw)
                record: Result | ErrorRecord = (
                    msgspec.convert(raw, ErrorRecord) if is_error else msgspec.convert(raw, Result)
                )
                out.records.append(record)
            except msgspec.MsgspecError:
                out.skipped += 1
    return out


async def read_outputs(
    options: Mapping[str, Any],
    results_topic: str,
    errors_topic: str,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Outputs:
    """Outputs of both topics; the wall time is the span of their record timestamps."""
    decoder = OutputDecoder()
    out = Outputs()

    def sink(decode: Callable[[bytes, str], Result | ErrorRecord]) -> Callable[[Any], None]:
        def on_record(record: Any) -> None:
            try:
                out.records.append(decode(record.value, content_type(record.headers)))
            except (msgspec.MsgspecError, TypeError):  # TypeError: a tombstone (value None)
                out.skipped += 1

        return on_record

    scans = await asyncio.gather(
        scan_topic(options, results_topic, sink(decoder.result), since_ms=since_ms, until_ms=until_ms),
        scan_topic(options, errors_topic, sink(decoder.error), since_ms=since_ms, until_ms=until_ms),
    )
    firsts = [s.first_timestamp_ms for s in scans if s.first_timestamp_ms is not None]
    lasts = [s.last_timestamp_ms for s in scans if s.last_timestamp_ms is not None]
    out.wall_seconds = (max(lasts) - min(firsts)) / 1000 if firsts and lasts else None
    out.incomplete = [s.topic for s in scans if not s.complete]
    return out
