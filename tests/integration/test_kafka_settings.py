"""The new Kafka settings against a real broker: static membership, compression on the wire, -X."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer import fetcher
from aiokafka.record.memory_records import MemoryRecords

from stream_service import clients
from stream_service.config import load_config
from stream_service.tools.produce import produce_requests
from stream_service.tools.scan import scan_topic
from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration

_GZIP = 1  # the codec bits of a record batch's attributes
_ASSIGNMENT_TIMEOUT_S = 60.0


async def _members_after_stop(bootstrap: str, topic: str, instance: str | None) -> list[Any]:
    """Join a fresh group as the service's consumer, stop, and return the group's members then."""
    group = f"settings-{uuid.uuid4().hex[:8]}"
    flags: dict[str, object] = {"kafka.bootstrap_servers": bootstrap, "topics.group_id": group}
    if instance is not None:
        flags["kafka.group_instance_id"] = instance
    consumer = clients.service_consumer(load_config(environ={}, flags=flags))
    consumer.subscribe([topic])
    await consumer.start()
    try:
        async with asyncio.timeout(_ASSIGNMENT_TIMEOUT_S):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)  # polling is what completes the join
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (described,) = response.groups
    members: list[Any] = described[5] if len(described) > 5 else described[-1]
    return members


async def test_static_member_keeps_its_place_when_it_stops(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """With kafka.group_instance_id the member does not leave the group on stop (no rebalance for a
    restart within the session timeout); without it, it leaves at once."""
    topic = await topic_factory(2, prefix="static")
    assert await _members_after_stop(kafka_bootstrap, topic, None) == []
    members = await _members_after_stop(kafka_bootstrap, topic, "worker-0")
    assert len(members) == 1
    # The broker names a static member after its instance id: "<group.instance.id>-<uuid>".
    assert members[0][0].startswith("worker-0-")


async def _codecs_on_the_wire(bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The codec of every record batch fetched from ``topic``, read from the raw fetch response."""
    codecs: set[int] = set()
    parse = fetcher.MemoryRecords

    def spy(raw: bytes) -> Any:
        records = MemoryRecords(raw)
        while (batch := records.next_batch()) is not None:
            codecs.add(batch.compression_type)
        return parse(raw)

    monkeypatch.setattr(fetcher, "MemoryRecords", spy)
    options = clients.tools_options(load_config(environ={}, flags={"kafka.bootstrap_servers": bootstrap}))
    stats = await scan_topic(options, topic, lambda record: None)
    assert stats.records == 200
    return codecs


@pytest.mark.parametrize(
    ("compression", "codecs"),
    [pytest.param("none", {0}, id="none"), pytest.param("gzip", {_GZIP}, id="gzip")],
)
async def test_compression_type_reaches_the_broker(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    compression: str,
    codecs: set[int],
) -> None:
    """kafka.compression_type (with an -X entry alongside) makes the producer write batches the
    broker stores with that codec: the fetched batches carry it."""
    topic = await topic_factory(1, prefix="codec")
    flags = {
        "kafka.bootstrap_servers": kafka_bootstrap,
        "kafka.compression_type": compression,
        "kafka.client_options.metadata.max.age.ms": "60000",
    }
    config = load_config(environ={}, flags=flags)
    stats = await produce_requests(clients.tools_options(config), topic, 200, prompt_bytes=400)
    assert stats.sent == 200
    assert await _codecs_on_the_wire(kafka_bootstrap, topic, monkeypatch) == codecs
