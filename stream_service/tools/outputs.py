"""Reading what the service wrote, one output at a time: results and errors, from the topics or
from a JSONL file. Each decoded output goes to a callback and is not kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from stream_service.messages import ErrorRecord, Result
from stream_service.tools.lineage import OutputDecoder, content_type
from stream_service.tools.progress import WorkMeter
from stream_service.tools.scan import Isolation, scan_topic

__all__ = ["OnOutput", "Outputs", "load_jsonl", "read_outputs"]

OnOutput = Callable[[Result | ErrorRecord], None]


class Outputs(msgspec.Struct, kw_only=True):
    """What a read saw besides the outputs: records skipped, the wall time they span, and the
    topics whose scan stopped before their end."""

    read: int = 0  # outputs decoded and handed on
    skipped: int = 0  # undecodable records (or tombstones)
    wall_seconds: float | None = None
    incomplete: list[str] = []


def load_jsonl(path: Path, on_output: OnOutput) -> Outputs:
    """Hand each Result or ErrorRecord of a JSONL file (one per line) to ``on_output``; raises
    OSError if the file cannot be read."""
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
            except msgspec.MsgspecError:
                out.skipped += 1
                continue
            on_output(record)
            out.read += 1
    return out


async def read_outputs(
    options: Mapping[str, Any],
    results_topic: str,
    errors_topic: str,
    on_output: OnOutput,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    isolation: Isolation = "read_uncommitted",
    meter: WorkMeter | None = None,
) -> Outputs:
    """Hand every output of both topics to ``on_output``, as it is read; the wall time is the
    span of their record timestamps."""
    decoder = OutputDecoder()
    out = Outputs()

    def sink(decode: Callable[[bytes, str], Result | ErrorRecord]) -> Callable[[Any], None]:
        def on_record(record: Any) -> None:
            try:
                output = decode(record.value, content_type(record.headers))
            except (msgspec.MsgspecError, TypeError):  # TypeError: a tombstone (value None)
                out.skipped += 1
                return
            on_output(output)
            out.read += 1

        return on_record

    scans = await asyncio.gather(
        *(
            scan_topic(
                options,
                topic,
                sink(decode),
                since_ms=since_ms,
                until_ms=until_ms,
                isolation=isolation,
                meter=meter,
            )
            for topic, decode in ((results_topic, decoder.result), (errors_topic, decoder.error))
        )
    )
    firsts = [s.first_timestamp_ms for s in scans if s.first_timestamp_ms is not None]
    lasts = [s.last_timestamp_ms for s in scans if s.last_timestamp_ms is not None]
    out.wall_seconds = (max(lasts) - min(firsts)) / 1000 if firsts and lasts else None
    out.incomplete = [s.topic for s in scans if not s.complete]
    return out
