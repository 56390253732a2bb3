"""Sending into a transaction: whole per-partition batches, in order, never over the record limit."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaConnectionError

from stream_service.pipeline.partition import partition_of
from stream_service.pipeline.transact_send import TxnSender
from tests.fakes import FakeTxnCoordinator, FakeTxnProducer
from tests.unit.test_publish import encoder, results

LIMIT_BYTES = 1_000_000


async def open_producer(*, batching: bool = True, partitions: int = 4) -> FakeTxnProducer:
    """A started producer of a fake coordinator, its transaction open."""
    coordinator = FakeTxnCoordinator(batching=batching, partitions=partitions)
    producer = await coordinator.start_producer("txn")
    await producer.begin_transaction()
    return producer


def futures(sent: list[Any]) -> int:
    """How many distinct futures the records were sent with."""
    return len({id(f) for f in sent})


async def test_records_go_in_one_batch_per_output_partition() -> None:
    """64 results for 4 partitions take 4 futures, each record in the partition murmur2 picks."""
    producer = await open_producer()
    records = results(64)
    sent = await TxnSender(encoder(), LIMIT_BYTES).send(producer, records)
    await asyncio.gather(*sent)
    assert futures(sent) == 4
    assert producer.coordinator.batches_sent == 4
    by_value = {rec.value: rec for rec in producer.pending}
    for rec, fut in zip(records, sent, strict=True):
        assert rec.key is not None
        assert fut.result().partition == partition_of(rec.key, [0, 1, 2, 3])
        assert rec.value in by_value


async def test_order_within_a_partition_is_kept() -> None:
    """Records for one output partition reach the transaction in the order given."""
    producer = await open_producer(partitions=1)
    records = results(40)
    await TxnSender(encoder(), LIMIT_BYTES).send(producer, records)
    assert [rec.value for rec in producer.pending] == [rec.value for rec in records]


async def test_no_batch_grows_past_the_record_limit() -> None:
    """A batch is closed before its records would pass max_record_bytes (a topic's max.message.bytes)."""
    producer = await open_producer(partitions=1)
    records = results(50)
    one = len(records[0].value)
    sent = await TxnSender(encoder(), one * 10).send(producer, records)
    sizes: dict[int, int] = {}
    for rec, fut in zip(records, sent, strict=True):
        sizes[id(fut)] = sizes.get(id(fut), 0) + len(rec.value)
    assert len(sizes) >= 5
    assert max(sizes.values()) <= one * 10


async def test_few_records_and_plain_producers_are_sent_one_by_one() -> None:
    """Under the batch minimum, or without create_batch, each record has its own send."""
    small = await open_producer()
    sent = await TxnSender(encoder(), LIMIT_BYTES, min_batch=8).send(small, results(5))
    assert futures(sent) == 5 and small.coordinator.batches_sent == 0
    plain = await open_producer(batching=False)
    sent = await TxnSender(encoder(), LIMIT_BYTES).send(plain, results(30))
    assert futures(sent) == 30


async def test_an_oversized_record_is_replaced_by_a_too_large_error() -> None:
    """A result over max_record_bytes is sent as a small too_large error, in or out of a batch."""
    producer = await open_producer(partitions=1)
    records = results(10)
    records[3].value = b"x" * 5_000
    await TxnSender(encoder(), 2_000, min_batch=2).send(producer, records)
    assert records[3].topic == "errors" and records[3].error_type == "too_large"
    assert len(producer.pending) == 10
    assert all(len(rec.value) <= 2_000 for rec in producer.pending)


async def test_a_failure_to_learn_the_partitions_fails_those_records_only() -> None:
    """partitions_for failing is that topic's records' error; nothing is lost silently."""
    producer = await open_producer()

    async def unreachable(topic: str) -> set[int]:
        raise KafkaConnectionError("no metadata")

    producer.partitions_for = unreachable  # type: ignore[method-assign]
    sent = await TxnSender(encoder(), LIMIT_BYTES).send(producer, results(20))
    assert all(isinstance(f, KafkaConnectionError) for f in sent)


async def test_batches_are_closed_before_they_are_handed_over() -> None:
    """A complete batch is closed, so aiokafka sends it without waiting out linger_ms."""
    producer = await open_producer()
    handed: list[Any] = []
    send_batch = producer.send_batch

    async def recording(batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        handed.append(batch)
        return await send_batch(batch, topic, partition)

    producer.send_batch = recording  # type: ignore[method-assign]
    await TxnSender(encoder(), LIMIT_BYTES).send(producer, results(64))
    assert handed and all(batch.closed for batch in handed)
