"""Tests for stream_service.pipeline.consume: the poll loop's back-pressure, against a fake consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from structlog.testing import capture_logs

from stream_service.pipeline import consume
from stream_service.pipeline.consume import BackPressurePolicy, PollLoop
from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.work import WorkItem
from tests.fakes import FakeConsumer

TP0 = TopicPartition("requests", 0)
TP1 = TopicPartition("requests", 1)


@pytest.fixture(autouse=True)
def short_idle_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """While everything is paused the loop polls every few milliseconds instead of every half second."""
    monkeypatch.setattr(consume, "IDLE_POLL_S", 0.005)


class Sink:
    """Takes fetched records into a real ledger, as the engine would; :meth:`finish` frees capacity."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.received: list[Any] = []
        self.running: list[WorkItem] = []
        self.got = asyncio.Event()

    def __call__(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        for tp, records in batch.items():
            state = self.ledger.states.get(tp)
            if state is None:
                continue  # the teardown's wake-up record
            items = [WorkItem(state, r.offset, None, 0, len(r.value), None, None) for r in records]
            self.ledger.consumed(items)
            self.ledger.started(items)
            self.received.extend(records)
            self.running.extend(items)
        self.got.set()

    def finish(self, n: int) -> None:
        """The next ``n`` records' outputs are acknowledged and committed."""
        done, self.running = self.running[:n], self.running[n:]
        self.ledger.finished(done)
        self.ledger.committed(self.ledger.commit_points())

    def queue(self, tp: TopicPartition, n: int) -> list[WorkItem]:
        """``n`` records of ``tp`` waiting in the queue (held back by a limiter or a busy key)."""
        state = self.ledger.states[tp]
        start = state.tracker.held() + 1_000_000  # offsets of their own, far from the fed ones
        items = [WorkItem(state, start + i, None, 0, 1, None, None) for i in range(n)]
        self.ledger.consumed(items)
        return items

    async def wait_received(self, n: int) -> None:
        while len(self.received) < n:
            self.got.clear()
            await self.got.wait()


class Loop:
    """A running PollLoop and the fakes around it."""

    def __init__(self, consumer: FakeConsumer, sink: Sink, loop: PollLoop) -> None:
        self.consumer = consumer
        self.engine = sink
        self.ledger = sink.ledger
        self.loop = loop
        self.pause_reasons: list[str] = []
        self.paused_counts: list[int] = []

    async def settle(self, polls: int = 3) -> None:
        """Let the loop poll a few more times (each poll re-applies back-pressure first)."""
        await self.consumer.wait_polls(len(self.consumer.calls) + polls)


async def start(
    *tps: TopicPartition, max_in_flight: int = 10, max_bytes: int = 1 << 30, batch_max_size: int = 1
) -> AsyncIterator[Loop]:
    consumer = FakeConsumer(tps)
    ledger = Ledger(ordered=False)
    ledger.open(tps)
    sink = Sink(ledger)
    policy = BackPressurePolicy(max_in_flight, max_bytes, batch_max_size)
    holder: list[Loop] = []
    poll_loop = PollLoop(
        consumer,
        ledger,
        policy,
        on_pause=lambda reason: holder[0].pause_reasons.append(reason),
        on_pause_change=lambda n: holder[0].paused_counts.append(n),
    )
    running = Loop(consumer, sink, poll_loop)
    holder.append(running)
    task = asyncio.create_task(poll_loop.run(sink))
    try:
        yield running
    finally:
        poll_loop.stop()
        ledger.capacity_changed.set()
        consumer.feed_values(TopicPartition("wake", 0), [b""])  # wake a getmany waiting for data
        async with asyncio.timeout(5):
            await task


@pytest.fixture
async def two_partitions() -> AsyncIterator[Loop]:
    async for running in start(TP0, TP1, max_in_flight=10):
        yield running


async def test_never_takes_more_than_the_free_capacity(two_partitions: Loop) -> None:
    """With 30 records waiting and room for 10, exactly 10 are taken; no getmany asks for more than that."""
    consumer, engine = two_partitions.consumer, two_partitions.engine
    consumer.feed_values(TP0, [b"x"] * 15)
    consumer.feed_values(TP1, [b"y"] * 15)
    await engine.wait_received(10)
    await two_partitions.settle()
    assert len(engine.received) == 10
    taken = 0
    for call in consumer.calls:
        assert call.returned <= (call.max_records or 0)
        taken += call.returned
        assert taken <= 10


async def test_pauses_every_partition_when_the_bound_is_reached(two_partitions: Loop) -> None:
    """Reaching max_in_flight pauses all partitions, with the in_flight_full reason."""
    consumer, engine = two_partitions.consumer, two_partitions.engine
    consumer.feed_values(TP0, [b"x"] * 20)
    await engine.wait_received(10)
    await two_partitions.settle()
    assert consumer.paused() == {TP0, TP1}
    assert two_partitions.loop.paused == {TP0, TP1}
    assert two_partitions.pause_reasons == ["in_flight_full"]
    assert two_partitions.paused_counts[-1] == 2


async def test_keeps_polling_while_paused(two_partitions: Loop) -> None:
    """With every partition paused, the loop still calls getmany (so the member stays in the group)."""
    consumer, engine = two_partitions.consumer, two_partitions.engine
    consumer.feed_values(TP0, [b"x"] * 20)
    await engine.wait_received(10)
    await two_partitions.settle(polls=1)
    before = len(consumer.calls)
    await two_partitions.settle(polls=5)
    paused_polls = [c for c in consumer.calls[before:] if c.paused == {TP0, TP1}]
    assert len(paused_polls) >= 5
    assert all(c.returned == 0 and c.timeout_ms == 0 for c in paused_polls)


async def test_resumes_with_hysteresis() -> None:
    """Paused at 100 in flight, it stays paused at 95, resumes at 90 (RESUME_FRACTION), then fills again."""
    async for running in start(TP0, max_in_flight=100):
        consumer, engine = running.consumer, running.engine
        consumer.feed_values(TP0, [b"x"] * 150)
        await engine.wait_received(100)
        await running.settle()
        assert consumer.paused() == {TP0}
        engine.finish(5)
        await running.settle()
        assert consumer.paused() == {TP0}, "95 in flight is above the resume threshold"
        assert len(engine.received) == 100
        engine.finish(5)
        await engine.wait_received(110)
        await running.settle()
        assert len(engine.received) == 110, "resumed, and took exactly the 10 free slots"
        assert consumer.paused() == {TP0}
        assert running.pause_reasons == ["in_flight_full", "in_flight_full"]


async def test_byte_bound_pauses_with_its_own_reason() -> None:
    """Reaching max_in_flight_bytes pauses all (in_flight_bytes_full); it may overshoot by one fetch."""
    async for running in start(TP0, max_in_flight=1000, max_bytes=100):
        consumer, engine = running.consumer, running.engine
        consumer.feed_values(TP0, [b"x" * 60])
        await engine.wait_received(1)
        consumer.feed_values(TP0, [b"x" * 60] * 5)
        await engine.wait_received(6)
        await running.settle()
        assert consumer.paused() == {TP0}
        assert running.pause_reasons == ["in_flight_bytes_full"]
        consumer.feed_values(TP0, [b"x" * 60] * 5)
        await running.settle()
        assert len(engine.received) == 6
        engine.finish(6)
        await engine.wait_received(11)


async def test_partition_backlog_pauses_only_that_partition() -> None:
    """A partition whose waiting backlog reaches its bound is paused alone; the other keeps flowing."""
    async for running in start(TP0, TP1, max_in_flight=20, batch_max_size=4):
        consumer, engine = running.consumer, running.engine
        backlog = BackPressurePolicy(20, 1 << 30, 4).partition_backlog(2)
        waiting = engine.queue(TP0, backlog)
        await running.settle()
        assert consumer.paused() == {TP0}
        assert running.pause_reasons == ["backlog"]
        consumer.feed_values(TP1, [b"y"] * 3)
        await engine.wait_received(3)
        running.ledger.started(waiting[: backlog - (backlog // 2 + 1)])
        await running.settle()
        assert consumer.paused() == {TP0}, "hysteresis: resume only at half the backlog"
        running.ledger.started(waiting[backlog - (backlog // 2 + 1) : backlog - backlog // 2])
        await running.settle()
        assert consumer.paused() == set()


async def test_revoked_partitions_are_left_alone() -> None:
    """A partition being revoked is neither paused nor resumed by back-pressure."""
    async for running in start(TP0, TP1, max_in_flight=5):
        running.ledger.revoke([TP1])
        running.consumer.feed_values(TP0, [b"x"] * 10)
        await running.engine.wait_received(5)
        await running.settle()
        assert running.consumer.paused() == {TP0}


async def test_fetch_errors_are_logged_and_polling_continues(two_partitions: Loop) -> None:
    """A KafkaError from getmany is logged as poll.error and the loop keeps going."""
    consumer, engine = two_partitions.consumer, two_partitions.engine
    with capture_logs() as logs:
        consumer.fail_next_getmany(2, KafkaConnectionError)
        await two_partitions.settle(polls=3)
        consumer.feed_values(TP0, [b"x"] * 3)
        await engine.wait_received(3)
    errors = [e for e in logs if e["event"] == "poll.error"]
    assert len(errors) == 2
    assert "KafkaConnectionError" in errors[0]["error"]


async def test_stop_ends_the_loop() -> None:
    """stop() makes run() return."""
    consumer = FakeConsumer([TP0])
    ledger = Ledger(ordered=False)
    ledger.open([TP0])
    poll_loop = PollLoop(consumer, ledger, BackPressurePolicy(10, 1 << 30, 1))
    task = asyncio.create_task(poll_loop.run(Sink(ledger)))
    await consumer.wait_polls(1)
    poll_loop.stop()
    async with asyncio.timeout(5):
        await task


async def test_records_fetched_after_stop_are_not_handed_on() -> None:
    """A fetch that returns after stop() hands nothing on: a drain must not gain work it never waits for."""
    consumer = FakeConsumer([TP0])
    ledger = Ledger(ordered=False)
    ledger.open([TP0])
    poll_loop = PollLoop(consumer, ledger, BackPressurePolicy(10, 1 << 30, 1))
    sink = Sink(ledger)
    task = asyncio.create_task(poll_loop.run(sink))
    await consumer.waiting.wait()  # a getmany is waiting for records
    poll_loop.stop()
    consumer.feed_values(TP0, [b"x"] * 3)  # ... and returns them after the stop
    async with asyncio.timeout(5):
        await task
    assert consumer.remaining(TP0) == 0  # they were fetched
    assert sink.received == []
    assert ledger.tracked == 0


@pytest.mark.parametrize(
    ("max_in_flight", "batch_max_size", "assigned", "expected"),
    [
        pytest.param(10_000, 512, 4, 2_500, id="share of the in-flight bound"),
        pytest.param(1_000, 512, 4, 512, id="at least one batch"),
        pytest.param(100, 8, 0, 100, id="no partitions"),
    ],
)
def test_partition_backlog_bound(
    max_in_flight: int, batch_max_size: int, assigned: int, expected: int
) -> None:
    """The per-partition backlog bound is the larger of a batch and a fair share of max_in_flight."""
    assert BackPressurePolicy(max_in_flight, 1, batch_max_size).partition_backlog(assigned) == expected
