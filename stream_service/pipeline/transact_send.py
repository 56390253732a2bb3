"""Transact, the sending: outputs handed to a partition's open transaction, in whole batches."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from stream_service.pipeline.encode import OutputEncoder, OutRecord
from stream_service.pipeline.partition import partition_of
from stream_service.pipeline.publish import (
    BATCHED_RECORD_MAX_BYTES,
    RECORD_OVERHEAD_BYTES,
    SendResult,
    submit_batch,
)

# Records for one output partition worth a batch of their own. Lower than at least once's 64:
# a transaction's hand-over sends what became ready in input order, often a few dozen records,
# and one future per batch instead of per record is most of what exactly once costs over at least
# once (aiokafka's send() makes a future and a task wake-up per record).
TXN_BATCH_MIN_RECORDS = 8


class TxnSender:
    """Sends records into a producer's open transaction: one future per batch, not per record.

    Guarantees: every record gets the future of its send (shared by the records of one batch)
    or the exception that kept it from being sent; records for one output partition are sent in
    the order given; a record over ``max_record_bytes`` is replaced by a ``too_large`` error
    first, and no batch built here grows past ``max_record_bytes``, so the broker never refuses
    one as too large (a refused record spoils its whole transaction). Partitions are chosen as
    any Kafka client would (murmur2 of the key). Producers without ``create_batch`` (and small
    groups, which aiokafka's accumulator batches well by itself) are sent record by record.
    """

    def __init__(
        self,
        encoder: OutputEncoder,
        max_record_bytes: int,
        *,
        batch_bytes: int | None = None,
        min_batch: int | None = None,
    ) -> None:
        """``batch_bytes``: the most the producer's batches hold (None: unknown); when no larger
        than ``max_record_bytes``, the batches need no byte count of ours."""
        self._encoder = encoder
        self.max_record_bytes = max_record_bytes
        self._batch_bytes = batch_bytes
        self._min_batch = TXN_BATCH_MIN_RECORDS if min_batch is None else min_batch
        self._partitions: dict[str, list[int]] = {}  # topic -> partition ids

    async def send(self, producer: Any, records: Sequence[OutRecord]) -> list[SendResult]:
        """Send ``records`` (their partition's transaction must be open); a result per record."""
        for rec in records:
            if len(rec.value) > self.max_record_bytes:
                self._shrink(rec)
        if not hasattr(producer, "create_batch") or len(records) < self._min_batch:
            return [await self._send_one(producer, rec) for rec in records]
        out: list[SendResult | None] = [None] * len(records)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, rec in enumerate(records):
            parts = self._partitions.get(rec.topic)
            if parts is None:
                try:
                    parts = self._partitions[rec.topic] = sorted(await producer.partitions_for(rec.topic))
                except KafkaError as exc:
                    out[i] = exc
                    continue
            if len(rec.value) > BATCHED_RECORD_MAX_BYTES:
                groups.setdefault((rec.topic, -1), []).append(i)  # sent alone, in order
                continue
            partition = partition_of(rec.key, parts) if rec.key is not None else random.choice(parts)
            groups.setdefault((rec.topic, partition), []).append(i)
        for (topic, partition), indexes in groups.items():
            if partition < 0 or len(indexes) < self._min_batch:
                for i in indexes:
                    out[i] = await self._send_one(producer, records[i], None if partition < 0 else partition)
            else:
                await self._send_batches(producer, topic, partition, records, indexes, out)
        return [f if f is not None else KafkaError("not sent") for f in out]

    async def _send_batches(
        self,
        producer: Any,
        topic: str,
        partition: int,
        records: Sequence[OutRecord],
        indexes: list[int],
        out: list[SendResult | None],
    ) -> None:
        cap = self.max_record_bytes
        # The topics take larger batches than the producer builds: its own limit is enough.
        counted = self._batch_bytes is None or self._batch_bytes > cap
        batch = producer.create_batch()
        members: list[int] = []
        for i in indexes:
            rec = records[i]
            full = counted and members and batch.size() + _record_bytes(rec) > cap
            if (
                full
                or batch.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers) is None
            ):
                await submit_batch(producer, batch, topic, partition, members, out)
                batch, members = producer.create_batch(), []
                if batch.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers) is None:
                    out[i] = await self._send_one(producer, rec, partition)  # over a batch by itself
                    continue
            members.append(i)
        await submit_batch(producer, batch, topic, partition, members, out)

    async def _send_one(self, producer: Any, rec: OutRecord, partition: int | None = None) -> SendResult:
        try:
            try:
                fut: asyncio.Future[Any] = await producer.send(
                    rec.topic, rec.value, key=rec.key, headers=rec.headers, partition=partition
                )
            except MessageSizeTooLargeError:  # over the producer's own max_request_size
                self._shrink(rec)
                fut = await producer.send(rec.topic, rec.value, key=rec.key, headers=rec.headers)
        except KafkaError as exc:
            error: BaseException = exc
            return error
        return fut

    def _shrink(self, rec: OutRecord) -> None:
        small = self._encoder.too_large(rec, self.max_record_bytes)
        if len(small.value) > self.max_record_bytes:
            item = rec.item
            small = self._encoder.minimal(item, item.request.id if item.request else None, "too_large")
        rec.topic, rec.key, rec.value, rec.headers = small.topic, small.key, small.value, small.headers
        rec.error_type, rec.outcome, rec.minimal = small.error_type, small.outcome, small.minimal


def _record_bytes(rec: OutRecord) -> int:
    """About what ``rec`` adds to a batch: key, value, headers and the record's own framing."""
    headers = sum(len(name) + len(value) for name, value in rec.headers) if rec.headers else 0
    return len(rec.value) + (len(rec.key) if rec.key else 0) + headers + RECORD_OVERHEAD_BYTES
