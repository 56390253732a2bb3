"""Lineage: which input an output record answers, read from its headers; decoding outputs.

Every output record carries ``source-topic``, ``source-partition`` and ``source-offset`` (the
input it answers), ``content-type``, and ``request-id``/``tenant`` when known (the header
names are in :mod:`stream_service.wire`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from stream_service.messages import ErrorRecord, Result
from stream_service.wire import (
    CONTENT_TYPE,
    JSON,
    MSGPACK,
    REQUEST_ID,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    TENANT,
)

__all__ = ["Lineage", "OutputDecoder", "content_type", "parse_lineage"]


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
        content_type=values.get(CONTENT_TYPE, JSON.encode()).decode(errors="replace"),
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
    return JSON
