"""Tests for stream_service.fetch_records: no fetched record can stop or stall the consumer."""

from __future__ import annotations

import gc
import struct
import weakref
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import READ_UNCOMMITTED
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from structlog.testing import capture_logs

from stream_service import fetch_records

TP = TopicPartition("requests", 0)
BAD_NAME_MARKER = "\x00bad"  # replaced by an invalid UTF-8 byte after the batch is built


def batch(
    base: int, records: list[tuple[bytes, list[tuple[str, bytes | None]]]], *, corrupt: bool = False
) -> bytes:
    """One v2 record batch at ``base``; header names starting with NUL become invalid UTF-8."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for i, (value, headers) in enumerate(records):
        builder.append(i, timestamp=None, key=None, value=value, headers=headers)
    buf = bytearray(builder.build())
    struct.pack_into(">q", buf, 0, base)
    while (at := buf.find(BAD_NAME_MARKER.encode())) >= 0:
        buf[at] = 0xFF
    struct.pack_into(">I", buf, 17, calc_crc32c(bytes(buf[21:])))
    if corrupt:
        buf[-1] ^= 0xFF  # after the CRC: the batch no longer matches it
    return bytes(buf)


def read(raw: bytes) -> tuple[list[int], fetcher.PartitionRecords]:
    fetch_records.install()
    records = fetcher.PartitionRecords(
        TP, fetcher.MemoryRecords(raw), None, 0, None, None, True, READ_UNCOMMITTED
    )
    return [r.offset for r in records], records


def test_the_unpatched_reader_fails_on_a_bad_header_name() -> None:
    """The defect this module exists for: aiokafka's own reader raises on such a record."""
    aiokafka_reader = fetch_records._GuardedPartitionRecords.__mro__[1]
    raw = batch(0, [(b"v", [(BAD_NAME_MARKER, b"x")])])
    records = aiokafka_reader(TP, MemoryRecords(raw), None, 0, None, None, True, READ_UNCOMMITTED)
    with pytest.raises(UnicodeDecodeError):
        list(records)


def test_a_bad_header_name_is_read_leniently_and_nothing_around_it_is_lost() -> None:
    """Records before, at and after the bad header name all come out, in offset order, once."""
    raw = (
        batch(0, [(b"a", []), (b"b", [("content-type", b"application/json")])])
        + batch(2, [(b"c", [(BAD_NAME_MARKER, b"x"), ("n", None)]), (b"d", [])])
        + batch(4, [(b"e", [])])
    )
    with capture_logs() as logs:
        offsets, records = read(raw)
    assert offsets == [0, 1, 2, 3, 4]
    assert records.next_fetch_offset == 5
    assert [e["event"] for e in logs] == ["fetch.lenient_headers"]


def test_headers_of_the_lenient_record_keep_their_values() -> None:
    """The bad name arrives as a surrogate-escaped str; null and normal values are kept."""
    fetch_records.install()
    raw = batch(0, [(b"c", [(BAD_NAME_MARKER, b"x"), ("n", None), ("content-type", b"j")])])
    records = fetcher.PartitionRecords(
        TP, fetcher.MemoryRecords(raw), None, 0, None, None, True, READ_UNCOMMITTED
    )
    (record,) = list(records)
    assert record.headers == (("\udcffbad", b"x"), ("n", None), ("content-type", b"j"))


def test_a_corrupt_batch_ends_the_fetch_after_the_records_before_it() -> None:
    """A CRC failure hands out the earlier records and leaves the position at the bad batch."""
    raw = batch(0, [(b"a", []), (b"b", [])]) + batch(2, [(b"c", [])], corrupt=True) + batch(3, [(b"d", [])])
    with capture_logs() as logs:
        offsets, records = read(raw)
    assert offsets == [0, 1]
    assert records.next_fetch_offset == 2
    assert [e["event"] for e in logs] == ["fetch.unreadable"]


def test_install_is_idempotent() -> None:
    """Installing twice leaves one patch in place."""
    fetch_records.install()
    fetch_records.install()
    assert fetcher.PartitionRecords is fetch_records._GuardedPartitionRecords
    assert fetcher.MemoryRecords is fetch_records._RawMemoryRecords
    assert fetcher.FetchResult is fetch_records._ReleasingFetchResult


class _Assignment:
    """The part of aiokafka's assignment a FetchResult asks: is the partition paused, where is it."""

    active = True

    def __init__(self, *, paused: bool) -> None:
        self.state = SimpleNamespace(paused=paused, position=0, consumed_to=lambda offset: None)

    def state_value(self, tp: TopicPartition) -> Any:
        return self.state


@pytest.mark.parametrize("drop", ["paused", "deleted"])
def test_a_fetch_dropped_unread_is_freed_without_the_cyclic_collector(drop: str) -> None:
    """Records dropped half read (partition paused, or the fetch discarded) are freed by refcount."""
    fetch_records.install()
    raw = batch(0, [(b"v" * 100, []) for _ in range(10)])
    records = fetcher.PartitionRecords(
        TP, fetcher.MemoryRecords(raw), None, 0, None, None, True, READ_UNCOMMITTED
    )
    assignment = _Assignment(paused=False)
    result = fetcher.FetchResult(TP, assignment=assignment, partition_records=records, backoff=0)
    assert len(result.getall(max_records=3)) == 3  # the generator is now running: the cycle exists
    alive = weakref.ref(records)
    del records
    gc.disable()  # only reference counting may free them
    try:
        if drop == "paused":
            assignment.state.paused = True
            assert result.getall() == []  # aiokafka drops the records of a paused partition
        else:
            del result
        assert alive() is None
    finally:
        gc.enable()
