"""Reading what the service wrote: results and errors, from the topics or from a JSONL file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from stream_service.messages import ErrorRecord, Result
from stream_service.tools.lineage import OutputDecoder, content_type
from stream_service.tools.scan import Isolation, scan_topic

__all__ = ["Outputs", "load_jsonl", "read_outputs"]


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
    isolation: Isolation = "read_uncommitted",
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
        scan_topic(
            options,
            results_topic,
            sink(decoder.result),
            since_ms=since_ms,
            until_ms=until_ms,
            isolation=isolation,
        ),
        scan_topic(
            options,
            errors_topic,
            sink(decoder.error),
            since_ms=since_ms,
            until_ms=until_ms,
            isolation=isolation,
        ),
    )
    firsts = [s.first_timestamp_ms for s in scans if s.first_timestamp_ms is not None]
    lasts = [s.last_timestamp_ms for s in scans if s.last_timestamp_ms is not None]
    out.wall_seconds = (max(lasts) - min(firsts)) / 1000 if firsts and lasts else None
    out.incomplete = [s.topic for s in scans if not s.complete]
    return out
