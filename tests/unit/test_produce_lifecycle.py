"""produce_requests always stops its producer: cancelled or failing during start, no connection leaks."""

from __future__ import annotations

import asyncio
import gc
import warnings
import weakref
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from stream_service.tools.produce import produce_requests


class StartNeverEnds:
    """A batch producer whose start blocks until cancelled (a broker that does not answer)."""

    def __init__(self) -> None:
        self.starting = asyncio.Event()
        self.stopped = False

    def __call__(self, **options: Any) -> StartNeverEnds:
        return self

    async def start(self) -> None:
        self.starting.set()
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        raise AssertionError("never started")

    def create_batch(self) -> Any:
        raise AssertionError("never started")

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        raise AssertionError("never started")


class StartFails(StartNeverEnds):
    async def start(self) -> None:
        raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9, <AddressFamily.AF_INET: 2>)]")


async def test_cancelled_during_start_stops_the_producer() -> None:
    """A cancellation while the producer starts still stops it, and the cancellation propagates."""
    producer = StartNeverEnds()
    task = asyncio.create_task(produce_requests("127.0.0.1:9", "in", 10, make_producer=producer))
    await producer.starting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert producer.stopped


async def test_failed_start_stops_the_producer() -> None:
    """A start that fails (no broker) stops the producer and raises the KafkaError."""
    producer = StartFails()
    with pytest.raises(KafkaConnectionError):
        await produce_requests("127.0.0.1:9", "in", 10, make_producer=producer)
    assert producer.stopped


class Stalling(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
    """A real producer whose start stalls before connecting, as on a broker that does not answer."""

    starting: asyncio.Event

    async def start(self) -> None:
        self.starting.set()
        await asyncio.Event().wait()


async def _cancel_while_starting() -> weakref.ref[AIOKafkaProducer]:
    """Cancel produce_requests while its real producer starts; a weak reference to that producer.

    Run as a task of its own: the CancelledError (whose traceback holds the producer) is thrown
    into this task's step, and released only when that step ends.
    """
    starting = asyncio.Event()
    made: list[weakref.ref[AIOKafkaProducer]] = []

    def make(**options: Any) -> Any:
        producer = Stalling(**options)
        producer.starting = starting
        made.append(weakref.ref(producer))
        return producer

    task = asyncio.create_task(produce_requests("127.0.0.1:9", "in", 10, make_producer=make))
    await starting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return made[0]


async def test_cancelled_real_producer_leaves_no_unclosed_producer_warning() -> None:
    """An AIOKafkaProducer cancelled while starting is closed: collecting it warns of nothing."""
    producer = await asyncio.create_task(_cancel_while_starting())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert producer() is None, "the producer must be collected for this check to mean anything"
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
