"""Smoke test of the integration environment: the broker behind ``kafka_bootstrap`` really works."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration

_KEYS = 50
_RECORDS = 1_000
_PARTITIONS = 4
_CONSUME_TIMEOUT_S = 60.0


@pytest.mark.timeout(180)
async def test_keyed_records_arrive_exactly_once_in_key_order(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """1,000 keyed records produced with acks=all and idempotence come back once each, in order per key."""
    topic = await topic_factory(_PARTITIONS)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        deliveries = []
        for i in range(_RECORDS):
            key = f"k{i % _KEYS}"
            seq = i // _KEYS  # per-key sequence number
            deliveries.append(await producer.send(topic, key=key.encode(), value=f"{key}:{seq}".encode()))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"smoke-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[str, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    received = 0
    try:
        async with asyncio.timeout(_CONSUME_TIMEOUT_S):
            while received < _RECORDS:
                batches = await consumer.getmany(timeout_ms=1_000)
                for tp, records in batches.items():
                    for record in records:
                        assert record.key is not None and record.value is not None
                        key, seq = record.value.decode().split(":")
                        assert key == record.key.decode()
                        seen[key].append(int(seq))
                        partitions_of_key[key].add(tp.partition)
                        received += 1
                if batches:
                    await consumer.commit()
        committed = {p: await consumer.committed(TopicPartition(topic, p)) for p in range(_PARTITIONS)}
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(_PARTITIONS)])
    finally:
        await consumer.stop()

    assert received == _RECORDS
    assert sorted(seen) == sorted(f"k{i}" for i in range(_KEYS))
    for key, seqs in seen.items():
        assert seqs == list(range(_RECORDS // _KEYS)), f"{key} arrived out of order or duplicated"
        assert len(partitions_of_key[key]) == 1, f"{key} was spread over partitions"
    assert committed == {tp.partition: end for tp, end in ends.items()}
