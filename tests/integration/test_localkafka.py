"""The local launcher's 3-node mode survives losing a node, as the fault-injection tests rely on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_service.localkafka import LocalKafka
from stream_service.localkafka.probe import port_open

pytestmark = pytest.mark.integration

_PARTITIONS = 4
_RECORDS = 200
_TIMEOUT_S = 90.0


async def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in described["partitions"]}
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, start: int, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sends = [await producer.send(topic, value=str(i).encode()) for i in range(start, start + count)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _consume_all(bootstrap: str, topic: str, expected: int) -> list[int]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"lk-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[int] = []
    try:
        while len(values) < expected:
            for records in (await consumer.getmany(timeout_ms=1_000)).values():
                values.extend(int(r.value) for r in records)
    finally:
        await consumer.stop()
    return values


@pytest.mark.timeout(240)
async def test_three_nodes_keep_accepting_acks_all_writes_with_one_node_killed(
    kafka_cluster3: LocalKafka,
) -> None:
    """With one of three nodes SIGKILLed, acks=all writes still succeed (min ISR 2) and nothing is lost."""
    cluster = kafka_cluster3
    assert len(cluster.bootstrap_servers.split(",")) == 3
    topic = f"lk-{uuid.uuid4().hex}"
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, _PARTITIONS, 3)])
        assert all(error[1] == 0 for error in response.topic_errors), response
    finally:
        await admin.close()
    await asyncio.to_thread(cluster.wait_in_sync, [topic])

    async with asyncio.timeout(_TIMEOUT_S):
        await _produce(cluster.bootstrap_servers, topic, 0, _RECORDS)
        victim = (await _leaders(cluster.bootstrap_servers, topic))[0]
        await asyncio.to_thread(cluster.kill_node, victim)
        assert not cluster.is_running(victim)
        assert not port_open(cluster.address(victim).host, cluster.address(victim).port)

        # Partition 0 must move to a surviving replica; writes wait for the new leader, not fail.
        await _produce(cluster.bootstrap_servers, topic, _RECORDS, _RECORDS)
        assert victim not in (await _leaders(cluster.bootstrap_servers, topic)).values()

        await asyncio.to_thread(cluster.start_node, victim)
        await asyncio.to_thread(cluster.wait_in_sync, [topic])
        values = await _consume_all(cluster.bootstrap_servers, topic, 2 * _RECORDS)

    assert sorted(values) == list(range(2 * _RECORDS))
