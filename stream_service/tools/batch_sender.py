"""Hands generated records to the producer as whole batches, and collects their acknowledgements.

Records are appended straight into per-partition batches (``create_batch`` / ``send_batch``)
and acknowledgements are awaited in bulk, about three times faster than one ``send()`` per
record. Keyed records are placed by CRC-32 of the key, so one key always lands on one
partition (though not on the partition Java's murmur2 partitioner would pick).
"""

from __future__ import annotations

import zlib
from collections import Counter, deque
from collections.abc import Generator
from typing import Any, Protocol

__all__ = ["MAX_BATCHES_IN_FLIGHT", "Ack", "BatchProducer", "BatchSender"]

MAX_BATCHES_IN_FLIGHT = 32


class Ack(Protocol):
    """A handed-over batch's delivery (aiokafka's ``asyncio.Future``, or a fake's).

    Awaiting it waits for the broker's acknowledgement; it raises KafkaError when the batch
    was not delivered.
    """

    def done(self) -> bool: ...
    def __await__(self) -> Generator[Any, None, Any]: ...


class BatchProducer(Protocol):
    """What the load generator needs of a producer: :class:`aiokafka.AIOKafkaProducer`, or a fake."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def partitions_for(self, topic: str) -> set[int]: ...
    def create_batch(self) -> Any: ...
    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Ack: ...


class BatchSender:
    """Fills one batch per partition; hands batches to the producer; awaits acks in bulk.

    Guarantees: at most :data:`MAX_BATCHES_IN_FLIGHT` handed-over batches are unacknowledged
    after each hand-off (it waits for the oldest beyond that: back-pressure), and a batch Kafka
    refused raises its KafkaError at the first hand-off after it failed, or from :meth:`flush`.
    Raises ValueError for a record that does not fit in an empty batch.

    Keyed records are placed by CRC-32 of the key (the same key always lands on the same
    partition) rather than Java's murmur2, which costs ~7 µs per record in pure Python.
    """

    def __init__(
        self, producer: BatchProducer, topic: str, partitions: list[int], headers: list[tuple[str, bytes]]
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._headers = headers
        self._open: dict[int, Any] = {}
        self._full: list[tuple[int, Any]] = []
        self._in_flight: deque[Ack] = deque()  # oldest first
        self._round_robin = 0
        self.per_partition: Counter[int] = Counter()

    def append(self, key: bytes | None, value: bytes) -> None:
        if key is None:
            partition = self._partitions[self._round_robin % len(self._partitions)]
            self._round_robin += 1
        else:
            partition = self._partitions[zlib.crc32(key) % len(self._partitions)]
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=self._headers) is None:
            self._full.append((partition, batch))
            batch = self._open[partition] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=self._headers) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in an empty batch")
        self.per_partition[partition] += 1

    async def send_full(self) -> None:
        """Hand full batches to the producer; wait for the oldest acks past the in-flight bound."""
        for partition, batch in self._full:
            batch.close()
            # send_batch waits while the partition already has a batch queued: back-pressure.
            self._in_flight.append(await self._producer.send_batch(batch, self._topic, partition=partition))
        self._full.clear()
        in_flight = self._in_flight
        # Acknowledged batches are collected as they come, so a failure surfaces without delay.
        while in_flight and (len(in_flight) > MAX_BATCHES_IN_FLIGHT or in_flight[0].done()):
            await in_flight.popleft()

    async def send_open(self) -> None:
        """Hand every batch to the producer, open ones included, without waiting for their acks."""
        self._full.extend((p, b) for p, b in self._open.items() if b.record_count())
        self._open.clear()
        await self.send_full()

    async def flush(self) -> None:
        """Send every batch, open ones included, and wait until all are acknowledged."""
        await self.send_open()
        while self._in_flight:
            await self._in_flight.popleft()
