"""Tests for stream_service.pipeline.publish: lineage headers, acknowledgement, retries, oversized records."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError, OutOfOrderSequenceNumber
from prometheus_client import CollectorRegistry

from stream_service.messages import ErrorRecord, Request, Result
from stream_service.observability.metrics import Metrics
from stream_service.pipeline import publish
from stream_service.pipeline.encode import OutputEncoder, OutRecord
from stream_service.pipeline.publish import Publisher
from stream_service.pipeline.work import PartitionState, WorkItem
from tests.fakes import FakeProducer

LIMIT_BYTES = 2_000


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Publish retries back off for milliseconds instead of a fifth of a second."""
    monkeypatch.setattr(publish, "PUBLISH_BACKOFF_INITIAL_S", 0.001)
    monkeypatch.setattr(publish, "PUBLISH_BACKOFF_MAX_S", 0.002)


def work_item(offset: int = 7, *, partition: int = 3, request: Request | None = None) -> WorkItem:
    state = PartitionState("requests", partition, ordered=False)
    request = request or Request(id=f"req-{offset}", prompt="hello", tenant="acme", metadata={"k": "v"})
    return WorkItem(state, offset, None, 0, 10, request, None)


def result_for(item: WorkItem, content: str = "answer", *, cached: bool = False) -> Result:
    assert item.request is not None
    return Result(
        id=item.request.id,
        content=content,
        processing_time=0.01,
        tenant=item.request.tenant,
        profile_name=item.request.profile_name,
        cached=cached,
    )


def encoder(encoding: str = "json") -> OutputEncoder:
    return OutputEncoder(results_topic="results", errors_topic="errors", encoding=encoding)  # type: ignore[arg-type]


def results(n: int, enc: OutputEncoder | None = None) -> list[OutRecord]:
    enc = enc or encoder()
    items = [work_item(offset) for offset in range(n)]
    return [enc.result(item, result_for(item, f"answer {item.offset}")) for item in items]


@pytest.mark.parametrize(
    ("encoding", "content_type", "decode"),
    [
        pytest.param("json", b"application/json", msgspec.json.decode, id="json"),
        pytest.param("msgpack", b"application/msgpack", msgspec.msgpack.decode, id="msgpack"),
    ],
)
def test_result_record_carries_lineage_headers(encoding: str, content_type: bytes, decode: object) -> None:
    """A result is keyed by request id and carries source topic/partition/offset, content type, id, tenant."""
    item = work_item(offset=41, partition=2)
    rec = encoder(encoding).result(item, result_for(item))
    assert rec.topic == "results"
    assert rec.key == b"req-41"
    assert rec.error_type is None
    assert rec.outcome == "success"
    assert dict(rec.headers) == {
        "source-topic": b"requests",
        "source-partition": b"2",
        "source-offset": b"41",
        "content-type": content_type,
        "request-id": b"req-41",
        "tenant": b"acme",
    }
    assert decode(rec.value)["content"] == "answer"  # type: ignore[operator]


def test_cached_result_is_counted_as_cached() -> None:
    """A result answered from the cache is marked with the cached outcome."""
    item = work_item()
    assert encoder().result(item, result_for(item, cached=True)).outcome == "cached"


def test_error_record_without_id_has_no_key_and_no_request_id_header() -> None:
    """An error for an undecodable input goes to the errors topic unkeyed, still with its source lineage."""
    item = WorkItem(PartitionState("requests", 0, ordered=False), 5, None, 0, 3, None, None)
    record = ErrorRecord(id=None, error="not JSON", error_type="validation", payload="{{{")
    rec = encoder().error(item, record)
    assert rec.topic == "errors"
    assert rec.key is None
    assert rec.error_type == "validation"
    assert rec.outcome == "error"
    headers = dict(rec.headers)
    assert headers["source-offset"] == b"5"
    assert "request-id" not in headers
    assert "tenant" not in headers


async def test_publish_returns_only_after_every_ack() -> None:
    """publish() does not return while any record's acknowledgement is outstanding."""
    producer = FakeProducer()
    producer.hold_acks()
    publisher = Publisher(producer, encoder(), max_request_size=LIMIT_BYTES)
    task = asyncio.create_task(publisher.publish(results(3)))
    await producer.wait_sent(3)
    assert not task.done()
    assert producer.acked == []
    producer.release_acks(reverse=True)
    await task
    assert len(producer.acked) == 3


@pytest.mark.parametrize(
    ("fail", "exc"),
    [
        pytest.param("future", KafkaConnectionError, id="acknowledgement fails"),
        pytest.param("future", NotLeaderForPartitionError, id="leader moved"),
        pytest.param("send", KafkaConnectionError, id="send raises before enqueueing"),
    ],
)
async def test_failed_sends_are_retried_until_acknowledged(fail: str, exc: type[Exception]) -> None:
    """Records whose send fails are sent again until Kafka acknowledges each of them exactly once."""
    producer = FakeProducer()
    if fail == "future":
        producer.fail_next(2, exc)  # type: ignore[arg-type]
    else:
        producer.raise_next(2, exc)  # type: ignore[arg-type]
    publisher = Publisher(producer, encoder(), max_request_size=LIMIT_BYTES)
    records = results(4)
    await publisher.publish(records)
    assert sorted(r.header("source-offset") or b"" for r in producer.acked) == [b"0", b"1", b"2", b"3"]
    assert publisher.failures == 2


async def test_failed_sends_and_producer_replacements_are_counted() -> None:
    """Each failed send counts in publish_failures_total; a fatal producer error renews the producer
    and counts in producer_replacements_total."""

    class StoppableProducer(FakeProducer):
        stopped = False

        async def stop(self) -> None:
            self.stopped = True

    broken, fresh = StoppableProducer(), FakeProducer()
    broken.fail_next(2, OutOfOrderSequenceNumber)  # type: ignore[arg-type]

    async def renew() -> FakeProducer:
        return fresh

    async def close(producer: Any) -> None:
        await producer.stop()

    metrics = Metrics(CollectorRegistry())
    publisher = Publisher(
        broken,
        encoder(),
        max_request_size=LIMIT_BYTES,
        renew=renew,
        close=close,
        on_failed=metrics.publish_failures_total.inc,
        on_renewed=metrics.producer_replacements_total.inc,
    )
    await publisher.publish(results(3))
    assert publisher.producer is fresh and broken.stopped
    assert metrics.registry.get_sample_value("stream_service_publish_failures_total") == 2
    assert metrics.registry.get_sample_value("stream_service_producer_replacements_total") == 1


async def test_publish_keeps_retrying_through_a_long_outage() -> None:
    """An outage longer than many backoffs only delays publish; nothing is dropped."""
    producer = FakeProducer()
    producer.fail_next(12)
    publisher = Publisher(producer, encoder(), max_request_size=LIMIT_BYTES)
    await publisher.publish(results(1))
    assert len(producer.acked) == 1
    assert len(producer.attempts) == 13


async def test_oversized_result_is_replaced_by_a_too_large_error() -> None:
    """A result the producer refuses as too large becomes a small too_large ErrorRecord, same lineage."""
    producer = FakeProducer(max_size=LIMIT_BYTES)
    publisher = Publisher(producer, encoder(), max_request_size=LIMIT_BYTES)
    item = work_item(offset=9)
    big = encoder().result(item, result_for(item, "x" * (LIMIT_BYTES * 2)))
    small = encoder().result(work_item(offset=10), result_for(work_item(offset=10), "fine"))
    await publisher.publish([big, small])
    assert [r.topic for r in producer.acked] == ["errors", "results"]
    sent = producer.acked[0]
    assert sent.header("source-offset") == b"9"
    assert sent.header("request-id") == b"req-9"
    assert sent.key == b"req-9"
    error = msgspec.json.decode(sent.value, type=ErrorRecord)
    assert error.error_type == "too_large"
    assert error.id == "req-9"
    assert error.tenant == "acme"
    assert "kafka.producer_max_request_size=2000" in error.error
    assert big.error_type == "too_large", "the caller sees the record as an error"
    assert big.outcome == "error"


async def test_record_rejected_as_too_large_by_the_broker_is_replaced() -> None:
    """A record the broker refuses as too large is replaced by a too_large ErrorRecord instead of retried."""
    producer = FakeProducer(broker_max_size=LIMIT_BYTES)
    publisher = Publisher(producer, encoder(), max_request_size=LIMIT_BYTES * 10)
    item = work_item()
    big = encoder().result(item, result_for(item, "x" * (LIMIT_BYTES * 2)))
    async with asyncio.timeout(2.0):
        await publisher.publish([big])
    assert [r.topic for r in producer.acked] == ["errors"]


async def test_cancelled_publish_propagates_cancellation() -> None:
    """Cancelling publish while acks are outstanding raises CancelledError, not a retry."""
    producer = FakeProducer()
    producer.hold_acks()
    publisher = Publisher(producer, encoder(), max_request_size=LIMIT_BYTES)
    task = asyncio.create_task(publisher.publish(results(2)))
    await producer.wait_sent(2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert publisher.failures == 0


async def test_batches_are_closed_before_they_are_handed_over() -> None:
    """A complete batch is closed, so aiokafka sends it without waiting out linger_ms."""
    producer = FakeProducer(batching=True, partitions=1)
    handed: list[Any] = []
    send_batch = producer.send_batch

    async def recording(batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        handed.append(batch)
        return await send_batch(batch, topic, partition)

    producer.send_batch = recording
    await Publisher(producer, encoder(), max_request_size=LIMIT_BYTES * 1000).publish(results(100))
    assert handed and all(batch.closed for batch in handed)
    assert len(producer.acked) == 100
