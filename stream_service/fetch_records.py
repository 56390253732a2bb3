"""Fetched records that cannot stop the consumer: aiokafka's record parsing, made lenient.

aiokafka 0.14 decodes every record header name as strict UTF-8 while it hands out fetched
records. Kafka's Java clients cannot write an invalid name, but other clients (librdkafka takes
header names as raw bytes) can, and one such record makes ``getmany`` raise
``UnicodeDecodeError``. Worse, aiokafka then drops the records it had already parsed from the
same fetch and moves the position to the bad record, which fails again on every fetch: the
partition stalls for good and the skipped records would be committed past.

:func:`install` patches aiokafka's fetcher (idempotently) so that:

- a fetch whose record batch has an undecodable header name is parsed again from that batch
  with a pure-Python reader that decodes names with ``surrogateescape`` (the record is then
  processed like any other: header names other than ``content-type`` mean nothing to us);
- any other error while parsing a fetch (``CorruptRecordException``: a bad CRC, a malformed
  record) ends that fetch after the records parsed so far, which are handed out instead of
  being dropped; the position stays at the bad batch, which is fetched again (a corrupt log on
  the broker is never skipped silently), and ``fetch.unreadable`` is logged.

It also frees a fetch that is dropped unread at once. aiokafka's ``PartitionRecords`` and its
record generator refer to each other, and aiokafka breaks that cycle only when the records are
read to the end; a fetch dropped before that (its partition paused by back-pressure, sought or
revoked: aiokafka drops it and fetches again later) was left to the cyclic garbage collector
with its fetch buffer (up to ``max_partition_fetch_bytes``, 1 MiB by default). Under
back-pressure with a slow processor that was hundreds of MB between collections (RSS 678 MB
against 129 MB, 200,000-record backlog, 1,000 in flight). :class:`_ReleasingFetchResult`
breaks the cycle when it lets go of its records, so reference counting frees them.

The fast C reader still parses every well-formed fetch; the Python reader runs only for the
rest of a fetch that held a bad header name. ``tests/unit/test_fetch_records.py`` checks the
patch against the pinned aiokafka version, so an upgrade that changes these internals fails
there first.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException, KafkaError
from aiokafka.record.default_records import _DefaultRecordBatchPy, _DefaultRecordPy
from aiokafka.record.legacy_records import _LegacyRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint

__all__ = ["install"]

_LOG_OVERHEAD = 12  # base offset (int64) + batch length (int32) in front of every batch
_MAGIC_OFFSET = 16  # where the magic byte of a batch is
_WARN_INTERVAL_S = 10.0  # a batch that stays unreadable is fetched again and again: warn this often
_log = structlog.get_logger("stream_service.fetch")
_last_warned: dict[str, float] = {}  # partition -> monotonic time of its last fetch.unreadable line


class _RawMemoryRecords:
    """aiokafka's (C) MemoryRecords, keeping the raw bytes for a lenient second reading."""

    __slots__ = ("raw", "has_next", "next_batch", "size_in_bytes")

    def __init__(self, raw: bytes) -> None:
        records = MemoryRecords(raw)
        self.raw = raw
        self.has_next: Callable[[], bool] = records.has_next
        self.next_batch: Callable[[], Any] = records.next_batch
        self.size_in_bytes: Callable[[], int] = records.size_in_bytes


class _LenientBatch(_DefaultRecordBatchPy):  # type: ignore[misc]
    """aiokafka's pure-Python v2 batch, decoding header names with ``surrogateescape``.

    ``_read_msg`` is aiokafka 0.14's own (Apache-2.0), with that one change.
    """

    def _read_msg(
        self, decode_varint: Callable[[bytearray, int], tuple[int, int]] = decode_varint
    ) -> _DefaultRecordPy:
        buffer: bytearray = self._buffer
        pos: int = self._pos  # type: ignore[has-type]
        length, pos = decode_varint(buffer, pos)
        start_pos = pos
        _, pos = decode_varint(buffer, pos)  # attributes: unused
        ts_delta, pos = decode_varint(buffer, pos)
        if self.timestamp_type == self.LOG_APPEND_TIME:
            timestamp = self.max_timestamp
        else:
            timestamp = self.first_timestamp + ts_delta
        offset_delta, pos = decode_varint(buffer, pos)
        offset = self.base_offset + offset_delta
        key_len, pos = decode_varint(buffer, pos)
        key = None
        if key_len >= 0:
            key = bytes(buffer[pos : pos + key_len])
            pos += key_len
        value_len, pos = decode_varint(buffer, pos)
        value = None
        if value_len >= 0:
            value = bytes(buffer[pos : pos + value_len])
            pos += value_len
        header_count, pos = decode_varint(buffer, pos)
        if header_count < 0:
            raise CorruptRecordException(f"Found invalid number of record headers {header_count}")
        headers: list[tuple[str, bytes | None]] = []
        while header_count:
            h_key_len, pos = decode_varint(buffer, pos)
            if h_key_len < 0:
                raise CorruptRecordException(f"Invalid negative header key size {h_key_len}")
            h_key = buffer[pos : pos + h_key_len].decode("utf-8", "surrogateescape")
            pos += h_key_len
            h_value_len, pos = decode_varint(buffer, pos)
            h_value = None
            if h_value_len >= 0:
                h_value = bytes(buffer[pos : pos + h_value_len])
                pos += h_value_len
            headers.append((h_key, h_value))
            header_count -= 1
        if pos - start_pos != length:
            raise CorruptRecordException(
                f"Invalid record size: expected to read {length} bytes in record "
                f"payload, but instead read {pos - start_pos}"
            )
        self._pos = pos
        return _DefaultRecordPy(offset, timestamp, self.timestamp_type, key, value, headers)


class _LenientMemoryRecords:
    """The batches of a fetch's raw bytes, read by the Python readers, from ``from_offset`` on."""

    def __init__(self, raw: bytes, from_offset: int) -> None:
        self._batches = self._split(raw, from_offset)
        self._next: Any = next(self._batches, None)

    @staticmethod
    def _split(raw: bytes, from_offset: int) -> Iterator[Any]:
        pos = 0
        while len(raw) - pos >= _LOG_OVERHEAD + 5:  # the magic byte must be there
            base_offset, length = struct.unpack_from(">qi", raw, pos)
            end = pos + _LOG_OVERHEAD + length
            if end > len(raw):
                return  # a partial batch at the end of a fetch: fetched again later
            data = raw[pos:end]
            pos = end
            magic = data[_MAGIC_OFFSET]
            batch = _LenientBatch(data) if magic >= 2 else _LegacyRecordBatchPy(data, magic)
            if batch.next_offset > from_offset:
                yield batch

    def has_next(self) -> bool:
        return self._next is not None

    def next_batch(self) -> Any:
        batch, self._next = self._next, next(self._batches, None)
        return batch


class _GuardedPartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's PartitionRecords, which never lets one bad record stop or stall the consumer."""

    def _unpack_records(self) -> Iterator[Any]:
        unpack = super()._unpack_records
        try:
            yield from unpack()
        except UnicodeDecodeError:
            raw = getattr(self._records, "raw", None)  # type: ignore[has-type]
            if raw is None:
                raise
            _log.warning("fetch.lenient_headers", partition=str(self._tp), offset=self.next_fetch_offset)
            self._records = _LenientMemoryRecords(raw, self.next_fetch_offset)
            yield from self._guarded(super()._unpack_records)
            return
        except KafkaError as exc:
            self._unreadable(exc)

    def _guarded(self, unpack: Callable[[], Iterator[Any]]) -> Iterator[Any]:
        try:
            yield from unpack()
        except (KafkaError, ValueError, struct.error) as exc:
            self._unreadable(exc)

    def _unreadable(self, exc: BaseException) -> None:
        # Ending here hands out what was parsed; the position stays at the bad batch.
        partition, now = str(self._tp), time.monotonic()
        if now - _last_warned.get(partition, float("-inf")) < _WARN_INTERVAL_S:
            return
        _last_warned[partition] = now
        _log.warning(
            "fetch.unreadable",
            partition=partition,
            offset=self.next_fetch_offset,
            error=f"{type(exc).__name__}: {exc}",
            hint="the broker returned a batch that cannot be parsed; it is fetched again",
        )


class _ReleasingFetchResult(fetcher.FetchResult):  # type: ignore[misc]
    """aiokafka's FetchResult, which breaks its records' reference cycle when it drops them unread.

    Guarantees: records it lets go of before they were read to the end (their partition was
    paused, sought or is no longer assigned), or still holds when it is itself dropped, are freed
    by reference counting at once instead of waiting for a cyclic collection.
    """

    def check_assignment(self, tp: Any) -> bool:
        records = self._partition_records
        if super().check_assignment(tp):
            return True
        _release(records)  # aiokafka has just dropped them: the partition is paused or moved
        return False

    def __del__(self) -> None:
        _release(getattr(self, "_partition_records", None))


def _release(records: Any) -> None:
    """End a PartitionRecords' generator, which holds the records (and so the fetch buffer)."""
    if records is not None:
        records._records_iterator = None


def install() -> None:
    """Patch aiokafka's fetcher (once): keep the raw bytes of each fetch, parse bad ones leniently,
    free fetches dropped unread at once."""
    if fetcher.PartitionRecords is _GuardedPartitionRecords:
        return
    fetcher.PartitionRecords = _GuardedPartitionRecords
    fetcher.MemoryRecords = _RawMemoryRecords
    fetcher.FetchResult = _ReleasingFetchResult
