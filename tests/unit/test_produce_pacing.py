"""Pacing of ``produce --rate``: the schedule as pure arithmetic, and produce_requests on a stepped clock."""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import pytest
from aiokafka.errors import KafkaError, KafkaTimeoutError

from stream_service.tools.batch_sender import MAX_BATCHES_IN_FLIGHT
from stream_service.tools.pacing import Pace
from stream_service.tools.produce import ProduceStats, produce_requests
from tests.fakes import FakeClock

# ------------------------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize(
    ("elapsed_s", "sent", "due"),
    [
        pytest.param(0.0, 0, 1, id="first record at once"),
        pytest.param(0.0, 1, 0, id="nothing more at the start"),
        pytest.param(0.0105, 1, 10, id="ten scheduled after 10.5 ms"),
        pytest.param(0.5, 11, 490, id="a late step catches up in one chunk"),
        pytest.param(0.5, 600, 0, id="never ahead of the schedule"),
    ],
)
def test_due_counts_the_records_scheduled_and_not_sent(elapsed_s: float, sent: int, due: int) -> None:
    """At 1000/s record i is due at i ms: due() is what the schedule allows minus what was sent."""
    assert Pace(rate_per_s=1000.0).due(elapsed_s, sent) == due


@pytest.mark.parametrize(
    ("rate", "elapsed_s", "sent", "wait_s"),
    [
        pytest.param(1000.0, 0.0, 1, 0.01, id="high rate waits one interval"),
        pytest.param(10.0, 0.0, 1, 0.1, id="low rate waits for the next record"),
        pytest.param(10.0, 0.05, 1, 0.05, id="counted from the start, not from the last send"),
        pytest.param(10.0, 0.5, 1, 0.01, id="behind schedule still waits one interval"),
    ],
)
def test_wait_is_until_the_next_record_and_at_least_an_interval(
    rate: float, elapsed_s: float, sent: int, wait_s: float
) -> None:
    """wait_s() is the time until record number ``sent`` is due, never shorter than interval_s."""
    assert Pace(rate_per_s=rate, interval_s=0.01).wait_s(elapsed_s, sent) == pytest.approx(wait_s)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"rate_per_s": 0.0}, id="zero rate"),
        pytest.param({"rate_per_s": -5.0}, id="negative rate"),
        pytest.param({"rate_per_s": math.inf}, id="infinite rate"),
        pytest.param({"rate_per_s": math.nan}, id="nan rate"),
        pytest.param({"rate_per_s": 10.0, "interval_s": 0.0}, id="zero interval"),
    ],
)
def test_pace_rejects_impossible_settings(kwargs: dict[str, float]) -> None:
    """A rate that is not a finite number > 0, or an interval that is not > 0, raises ValueError."""
    with pytest.raises(ValueError):
        Pace(**kwargs)


@pytest.mark.parametrize("hand_off_s", [0.0, 0.004, 0.025], ids=["free", "4 ms per step", "25 ms per step"])
def test_schedule_meets_the_rate_whatever_each_step_costs(hand_off_s: float) -> None:
    """Stepping due/wait on a clock, 1000 records at 1000/s take about 1 s even when each step is slow."""
    pace = Pace(rate_per_s=1000.0)
    clock = FakeClock(start=0.0)
    sent = 0
    while sent < 1000:
        chunk = min(pace.due(clock(), sent), 1000 - sent)
        if chunk == 0:
            clock.advance(pace.wait_s(clock(), sent))
            continue
        sent += chunk
        clock.advance(hand_off_s)  # the cost of handing a chunk to the producer
    assert clock() == pytest.approx(1.0, abs=0.011 + hand_off_s)


# ------------------------------------------------------------------------------- produce_requests, stepped


class FakeAck:
    """A batch's acknowledgement that arrives ``latency`` after the hand-off, on the fake clock.

    Awaiting one that has not arrived yet moves the clock to its arrival: waiting costs time.
    """

    def __init__(self, clock: FakeClock, arrives_at: float, error: KafkaError | None) -> None:
        self._clock = clock
        self.arrives_at = arrives_at
        self.error = error
        self.awaited = False

    def done(self) -> bool:
        return self._clock() >= self.arrives_at

    def __await__(self) -> Generator[Any, None, Any]:
        if not self.done():
            self._clock.advance(self.arrives_at - self._clock())
        self.awaited = True
        if self.error is not None:
            raise self.error
        return None
        yield  # a generator, as __await__ must return an iterator


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[bytes] = []
        self.closed = False

    def append(self, *, key: bytes | None, value: bytes, timestamp: None, headers: object) -> object:
        if len(self.records) >= self.capacity:
            return None
        self.records.append(value)
        return object()

    def close(self) -> None:
        self.closed = True

    def record_count(self) -> int:
        return len(self.records)


class SteppedProducer:
    """A batch producer on a fake clock: records every hand-off; acks arrive ``ack_latency_s`` later."""

    def __init__(
        self, clock: FakeClock, *, ack_latency_s: float, partitions: int = 3, fail_after: int | None = None
    ) -> None:
        self.clock = clock
        self.ack_latency_s = ack_latency_s
        self.partitions = partitions
        self.fail_after = fail_after
        self.options: dict[str, Any] = {}
        self.handed_over: list[tuple[float, int]] = []  # (time, records in the batch)
        self.acks: list[FakeAck] = []
        self.max_unacknowledged = 0
        self.stopped = False

    def __call__(self, **options: Any) -> SteppedProducer:
        self.options = options
        return self

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(capacity=1000)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> FakeAck:
        assert batch.closed
        now = self.clock()
        failing = self.fail_after is not None and len(self.acks) >= self.fail_after
        error = KafkaTimeoutError("injected") if failing else None
        ack = FakeAck(self.clock, now + self.ack_latency_s, error)
        self.acks.append(ack)
        self.handed_over.append((now, batch.record_count()))
        self.max_unacknowledged = max(self.max_unacknowledged, sum(not a.done() for a in self.acks))
        return ack


async def _produce(
    producer: SteppedProducer, count: int, rate: float = 0.0
) -> tuple[ProduceStats, list[float]]:
    """produce_requests on the producer's fake clock; its stats and every sleep it asked for."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        producer.clock.advance(seconds)

    stats = await produce_requests(
        "fake:9092", "in", count, rate=rate, clock=producer.clock, sleep=sleep, make_producer=producer
    )
    return stats, sleeps


async def test_paced_produce_meets_the_offered_rate_while_acks_are_slow() -> None:
    """With acks taking 30 ms (3 pacing intervals), 1000 records at 1000/s still take about 1 s."""
    producer = SteppedProducer(FakeClock(start=0.0), ack_latency_s=0.03)
    stats, _ = await _produce(producer, 1000, rate=1000.0)
    assert stats.sent == 1000 == sum(n for _, n in producer.handed_over)
    assert stats.elapsed_s == pytest.approx(1.03, abs=0.015)  # the last record at ~1 s, its ack 30 ms later
    assert stats.rate_per_s > 950
    assert all(ack.awaited for ack in producer.acks) and producer.stopped
    assert producer.options["bootstrap_servers"] == "fake:9092" and producer.options["acks"] == "all"


async def test_paced_produce_sends_on_schedule() -> None:
    """At each hand-off exactly the records scheduled so far have gone out, and waits are >= 10 ms."""
    producer = SteppedProducer(FakeClock(start=0.0), ack_latency_s=0.02)
    _, sleeps = await _produce(producer, 500, rate=500.0)
    handed_by: dict[float, int] = {}
    total = 0
    for at, records in producer.handed_over:
        total += records
        handed_by[at] = total
    assert len(handed_by) > 50  # many small steps, not a few bursts
    for at, handed in handed_by.items():
        assert handed == min(500, math.floor(at * 500.0) + 1)  # everything due, nothing early
    assert sleeps and min(sleeps) == pytest.approx(0.01)


async def test_unacknowledged_batches_stay_bounded() -> None:
    """With acks taking 5 s, at most MAX_BATCHES_IN_FLIGHT batches (plus one hand-off) await their ack."""
    producer = SteppedProducer(FakeClock(start=0.0), ack_latency_s=5.0, partitions=3)
    stats, _ = await _produce(producer, 2000, rate=1000.0)
    assert stats.sent == 2000
    assert MAX_BATCHES_IN_FLIGHT <= producer.max_unacknowledged <= MAX_BATCHES_IN_FLIGHT + 3
    assert all(ack.awaited for ack in producer.acks)


async def test_unpaced_produce_never_sleeps() -> None:
    """Without --rate records go out in full batches as fast as they are generated, without sleeping."""
    producer = SteppedProducer(FakeClock(start=0.0), ack_latency_s=0.001)
    stats, sleeps = await _produce(producer, 12_000)
    assert stats.sent == 12_000 and sleeps == []
    assert all(records == 1000 for _, records in producer.handed_over[:9])  # full batches first


async def test_a_refused_batch_raises_and_the_producer_is_stopped() -> None:
    """A batch Kafka did not acknowledge makes produce_requests raise KafkaError; the producer stops."""
    producer = SteppedProducer(FakeClock(start=0.0), ack_latency_s=0.002, fail_after=5)
    with pytest.raises(KafkaError):
        await _produce(producer, 300, rate=100.0)
    assert producer.stopped
    assert producer.clock() < 0.2  # surfaced at the next hand-off, not after everything was sent
