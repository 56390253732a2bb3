"""bench.raw_loop's loops over in-memory fakes: every record answered, commits after acknowledgements."""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple

import msgspec

from bench.raw_loop import raw_loop
from stream_service.messages import Request, Result


class _Record(NamedTuple):
    value: bytes
    partition: int = 0
    offset: int = 0


class _FakeProducer:
    """send() enqueues and returns a delivery future that is acknowledged on the next loop turn."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.headers: list[Any] = []
        self.acked = 0

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any = None) -> asyncio.Future[Any]:
        self.sent.append((topic, value, key))
        self.headers.append(headers)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(self._ack, future)
        return future

    def _ack(self, future: asyncio.Future[Any]) -> None:
        self.acked += 1
        future.set_result(None)


class _FakeConsumer:
    """Hands out the given batches, then nothing; records how many answers were acked at each commit."""

    def __init__(self, producer: _FakeProducer, batches: list[list[_Record]]) -> None:
        self._producer = producer
        self._batches = batches
        self.commits: list[int] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[int, list[_Record]]:
        return {0: self._batches.pop(0)} if self._batches else {}

    async def commit(self) -> None:
        self.commits.append(self._producer.acked)


def _records(n: int, start: int = 0) -> list[_Record]:
    return [_Record(msgspec.json.encode(Request(id=str(i), prompt=f"p{i}"))) for i in range(start, start + n)]


async def test_w1_loop_echoes_every_record_and_commits_after_its_acks() -> None:
    """The W1 loop answers each record with its prompt and commits a batch once all of it is acked."""
    producer = _FakeProducer()
    consumer = _FakeConsumer(producer, [_records(3), _records(2, start=3)])
    assert await raw_loop(consumer, producer, "out", 5) == 5  # type: ignore[arg-type]
    results = [msgspec.json.decode(value, type=Result) for _, value, _ in producer.sent]
    assert [(r.id, r.content) for r in results] == [(str(i), f"p{i}") for i in range(5)]
    assert [key for _, _, key in producer.sent] == [str(i).encode() for i in range(5)]
    assert consumer.commits == [3, 5]


async def test_w1_loop_with_lineage_names_each_answers_input() -> None:
    """With lineage, each answer carries its input's source-partition and source-offset headers."""
    producer = _FakeProducer()
    batch = [r._replace(partition=3, offset=100 + i) for i, r in enumerate(_records(2))]
    consumer = _FakeConsumer(producer, [batch])
    await raw_loop(consumer, producer, "out", 2, lineage=True)  # type: ignore[arg-type]
    assert producer.headers == [
        [("source-partition", b"3"), ("source-offset", b"100")],
        [("source-partition", b"3"), ("source-offset", b"101")],
    ]
    await raw_loop(_FakeConsumer(producer, [_records(1)]), producer, "out", 1)  # type: ignore[arg-type]
    assert producer.headers[-1] is None


async def test_w2_loop_waits_at_most_c_at_a_time_then_commits() -> None:
    """The W2 loop awaits each request under a semaphore of C (12 requests, C = 4: three waves)."""
    producer = _FakeProducer()
    consumer = _FakeConsumer(producer, [_records(12)])
    started = time.perf_counter()
    done = await raw_loop(consumer, producer, "out", 12, concurrency=4, sleep_s=0.02)  # type: ignore[arg-type]
    assert done == 12 and len(producer.sent) == 12
    assert time.perf_counter() - started >= 3 * 0.015
    assert consumer.commits == [12]
    assert all(msgspec.json.decode(v, type=Result).processing_time >= 0.015 for _, v, _ in producer.sent)
