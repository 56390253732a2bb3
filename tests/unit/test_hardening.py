"""One test per defect of the hardening issue: inputs, outputs and faults that used to crash the
service (and, redelivered after every restart, crash-loop it) or stall a partition.

Each test names its defect (``#n``) in its docstring; ``test_poison_property.py`` closes the class.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import msgspec
import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from stream_service.config import (
    BatchSettings,
    DeliverySettings,
    ExecutorSettings,
)
from stream_service.messages import ErrorRecord, Request, Result
from stream_service.pipeline.decode import RequestDecoder
from stream_service.pipeline.encode import OutputEncoder
from stream_service.pipeline.limit import RateLimit
from stream_service.pipeline.publish import RECORD_OVERHEAD_BYTES, Publisher
from stream_service.pipeline.retry import RetryPolicy
from stream_service.pipeline.schedule import FairScheduler, SchedulerPolicy, TenantPolicy
from stream_service.pipeline.work import PartitionState, WorkItem
from stream_service.processors.loader import ProcessorSpec, load_processor
from stream_service.settings import is_secret, redact_tree
from stream_service.wiring import build_executor
from tests.engine_kit import TP0, Harness, config, decode_error, decode_result, req, running, settle
from tests.fakes import FakeClock, FakeProducer
from tests.fixtures import chaos

CHAOS = "python:tests.fixtures.chaos:chaos"
EXT = msgspec.msgpack.Ext(1, b"z")
ONE_BATCH_OF_200 = BatchSettings(max_size=200, min_size=1, initial_size=200, linger_ms=0.0)


def chaos_processor() -> Any:
    return load_processor(ProcessorSpec(name=CHAOS, hrv=False))


def outputs_in_order(h: Harness) -> list[tuple[int, str, Result | ErrorRecord]]:
    """(input offset, topic, decoded output) of every acknowledged output, in acknowledgement order."""
    out: list[tuple[int, str, Result | ErrorRecord]] = []
    for rec in h.producer.acked:
        offset = int(rec.header("source-offset") or b"-1")
        body = decode_result(rec) if rec.topic == "results" else decode_error(rec)
        out.append((offset, rec.topic, body))
    return out


async def test_1_a_null_header_value_is_an_absent_header() -> None:
    """#1: a record whose content-type header is null is decoded with the default encoding."""
    h = Harness(config())
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "hello")], headers=[("content-type", None), ("x", None)])  # type: ignore[list-item]
        await h.producer.wait_acked(1)
    ((offset, topic, body),) = outputs_in_order(h)
    assert (offset, topic) == (0, "results") and isinstance(body, Result) and body.content == "HELLO"


@pytest.mark.parametrize(
    ("value", "content_type", "output", "path"),
    [
        pytest.param(
            msgspec.msgpack.encode(
                {"id": "a", "prompt": "p", "metadata": {"x": msgspec.msgpack.Ext(1, b"z")}}
            ),
            b"application/msgpack",
            "json",
            "$.metadata.x",
            id="MessagePack Ext value, JSON output",
        ),
        pytest.param(
            msgspec.msgpack.encode({"id": "a", "prompt": "p", "metadata": {"x": {1: "one"}}}),
            b"application/msgpack",
            "json",
            "$.metadata.x: a key of type int",
            id="non-string nested key, JSON output",
        ),
        pytest.param(
            b'{"id": "a", "prompt": "p", "metadata": {"n": [1, 123456789012345678901234567890]}}',
            b"application/json",
            "msgpack",
            "$.metadata.n[1]: the integer is beyond 64 bits",
            id="integer beyond 64 bits, MessagePack output",
        ),
    ],
)
async def test_2_metadata_that_cannot_be_encoded_is_a_validation_error_naming_the_path(
    value: bytes, content_type: bytes | None, output: str, path: str
) -> None:
    """#2: metadata one output encoding cannot carry is rejected at decode time, naming its path."""
    h = Harness(config(delivery=DeliverySettings(commit_interval_s=0.02, encoding=output)))  # type: ignore[arg-type]
    headers = [("content-type", content_type)] if content_type else []
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [value], headers=headers)  # type: ignore[arg-type]
        await h.producer.wait_acked(1)
    (rec,) = h.producer.acked
    decode = msgspec.json.decode if output == "json" else msgspec.msgpack.decode
    error = msgspec.convert(decode(rec.value), ErrorRecord)
    assert error.error_type == "validation" and path in error.error
    assert error.metadata == {}, "the salvaged metadata is left out too"
    assert h.consumer.committed == {TP0: 1}


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        pytest.param("object:", "$.metadata.o: a value of type object", id="custom object in metadata"),
        pytest.param("scalar:", "$.metadata.score: a value of type NumpyLikeScalar", id="numpy-like scalar"),
        pytest.param("nan:", "$.metadata.v: nan is not a finite number", id="NaN"),
        pytest.param("surrogate:", "could not be encoded as json", id="content that is not valid Unicode"),
        pytest.param("bytes:", "processor returned bytes", id="bytes instead of text"),
    ],
)
async def test_3_processor_output_that_cannot_be_published_becomes_that_inputs_error(
    prompt: str, message: str
) -> None:
    """#3: whatever a processor returns, the engine publishes one record and keeps running."""
    h = Harness(config(), processor=chaos_processor())
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("bad", prompt), req("fine", "ok:fine")])
        await h.producer.wait_acked(2)
    by_id = {body.id: body for _, _, body in outputs_in_order(h)}
    assert isinstance(by_id["bad"], ErrorRecord) and by_id["bad"].error_type == "unknown"
    assert message in by_id["bad"].error
    assert isinstance(by_id["fine"], Result)
    assert h.consumer.committed == {TP0: 2}


async def test_3_an_answer_the_worker_cannot_send_back_fails_only_its_request() -> None:
    """#3: a process worker whose answer cannot be pickled fails that request; its neighbours succeed."""
    spec = ProcessorSpec(name="python:tests.fixtures.unpicklable:answer", hrv=False)
    executor = build_executor(
        "process",
        processor=load_processor(spec),
        spec=spec,
        retry=RetryPolicy(max_attempts=1),
        timeout_s=30.0,
        concurrency=1,
        workers=1,
    )
    try:
        await executor.warm_up()
        requests = [Request(id=str(i), prompt="unpicklable" if i == 1 else "fine") for i in range(3)]
        executor.acquire(3)
        outcomes = await executor.run(requests)
    finally:
        await executor.aclose()
    assert [o.output is not None for o in outcomes] == [True, False, True]
    assert outcomes[1].error is not None and "could not be returned" in str(outcomes[1].error)


async def test_4_a_batch_refused_as_too_large_is_sent_again_record_by_record() -> None:
    """#4: records of a batch the broker refuses are published as they were when each fits alone."""
    producer = FakeProducer(batching=True, broker_max_batch=20_000, partitions=1)
    # concurrency 1024: the async executor's batches are a quarter of it, big enough for send_batch
    cfg = config(batch=ONE_BATCH_OF_200, executor=ExecutorSettings(concurrency=1024))
    h = Harness(cfg, producer=producer)
    values = [req(f"r{i}", "p" * 300) for i in range(100)]  # ~100 results of ~400 B: over 20 kB together
    async with running(h, TP0):
        h.consumer.feed_values(TP0, values)
        await producer.wait_acked(100)
    topics = {rec.topic for rec in producer.acked}
    assert topics == {"results"}, "no valid result was replaced by a too_large error"
    refused = sum(len(rec.value) + RECORD_OVERHEAD_BYTES for rec in producer.acked)
    assert h.engine.parts.publisher.batch_cap_bytes <= refused // 2, (
        "later batches stay under the refused size"
    )
    assert producer.batches_sent == 1 + 100, "the refused batch, then each record in a batch of its own"


async def test_5_the_too_large_replacement_always_fits() -> None:
    """#5: when even the too_large replacement is refused, the minimal one is published; nothing stalls."""
    producer = FakeProducer(broker_max_size=250)
    h = Harness(config(), producer=producer, processor=chaos_processor())
    async with running(h, TP0):
        h.consumer.feed_values(
            TP0, [msgspec.json.encode({"id": "big", "prompt": "huge:5000", "tenant": "t" * 256})]
        )
        await producer.wait_acked(1)
    (rec,) = producer.acked
    error = decode_error(rec)
    assert (error.id, error.error_type) == ("big", "too_large") and error.tenant is None
    assert len(rec.value) <= 250
    assert h.consumer.committed == {TP0: 1}


def test_5_a_tenant_over_its_length_limit_is_a_validation_error() -> None:
    """#5: tenant and profile_name are bounded like id, so no output can be inflated by them."""
    decoder = RequestDecoder(
        max_prompt_bytes=1 << 20, max_message_bytes=1 << 21, default_encoding="json", known_profiles=None
    )
    failure = decoder.decode(msgspec.json.encode({"id": "a", "prompt": "p", "tenant": "t" * 600_000}), None)
    assert not isinstance(failure, Request) and "$.tenant" in failure.message
    assert failure.tenant is None, "the oversized tenant is not salvaged into the error record"


async def test_6_a_producer_that_cannot_be_replaced_during_an_outage_does_not_stop_publishing() -> None:
    """#6: a replacement that fails to start (brokers down) is tried again later; the publish succeeds."""
    broken = FakeProducer()
    broken.fail_next(1, OutOfOrderSequenceNumber)
    fresh = FakeProducer()
    attempts: list[int] = []
    closed: list[Any] = []

    async def renew() -> FakeProducer:
        attempts.append(1)
        if len(attempts) == 1:
            raise KafkaConnectionError("brokers down")
        return fresh

    async def close(producer: Any) -> None:
        closed.append(producer)

    encoder = OutputEncoder(results_topic="results", errors_topic="errors", encoding="json")
    publisher = Publisher(broken, encoder, max_request_size=1 << 20, renew=renew, close=close)
    broken.fail_next(3, OutOfOrderSequenceNumber)  # the next rounds fail too, until replaced
    item = WorkItem(
        PartitionState("requests", 0, ordered=False), 0, None, 0, 1, Request(id="r", prompt="p"), None
    )
    result = Result(id="r", content="c", processing_time=0.0, tenant="t", profile_name="p")
    await asyncio.wait_for(publisher.publish([encoder.result(item, result)]), 60)
    assert len(attempts) == 2 and publisher.producer is fresh and closed == [broken]
    assert [r.header("request-id") for r in fresh.acked] == [b"r"]


async def test_6_a_producer_whose_stop_hangs_is_torn_down() -> None:
    """#6: close_producer cancels the sender of a producer whose stop() hangs, and fails its batches."""
    from stream_service.clients import close_producer

    class Accumulator:
        def __init__(self) -> None:
            self.failed: list[BaseException] = []

        def fail_all(self, exc: BaseException) -> None:
            self.failed.append(exc)

    class Client:
        closed = False

        async def close(self) -> None:
            self.closed = True

    class Sender:
        def __init__(self) -> None:
            self.sender_task = asyncio.create_task(asyncio.Event().wait())  # a sender that never ends

    class Stuck:
        def __init__(self) -> None:
            self._sender = Sender()
            self._message_accumulator = Accumulator()
            self.client = Client()

        async def stop(self) -> None:
            await asyncio.Event().wait()  # flushing to brokers that are down

    stuck = Stuck()
    await close_producer(stuck, timeout_s=0.05)
    assert stuck._sender.sender_task.cancelled()
    assert len(stuck._message_accumulator.failed) == 1 and stuck.client.closed


async def test_7_a_sync_plugin_under_the_async_executor_never_blocks_the_loop() -> None:
    """#7: with executor.kind=async, a hanging sync plugin times out on a thread; the loop stays free."""
    chaos.misbehave()
    spec = ProcessorSpec(name="python:tests.fixtures.chaos:chaos_sync", hrv=False)
    executor = build_executor(
        "async", processor=load_processor(spec), spec=spec, retry=RetryPolicy(max_attempts=1),
        timeout_s=0.2, concurrency=8, workers=1,
    )  # fmt: skip
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)  # a heartbeat the test counts, not synchronisation
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        executor.acquire(2)
        outcomes = await executor.run([Request(id="h", prompt="hang:"), Request(id="k", prompt="ok:k")])
    finally:
        ticker.cancel()
        chaos.stop_misbehaving()
        await executor.aclose()
        chaos.misbehave()
    assert [o.error.error_type if o.error else "ok" for o in outcomes] == ["timeout", "timeout"]
    assert ticks > 0, "the event loop ran while the sync processor hung"


async def test_7_the_deadline_of_an_attempt_does_not_grow_with_the_batch() -> None:
    """#7: a batch of 50 on a hung thread gets timeouts after request_timeout_s, not 50 times that."""
    release = threading.Event()

    spec = ProcessorSpec(name="python:tests.fixtures.chaos:chaos_sync", hrv=False)
    executor = build_executor(
        "thread", processor=load_processor(spec), spec=spec, retry=RetryPolicy(max_attempts=1),
        timeout_s=0.2, concurrency=1, workers=1,
    )  # fmt: skip
    chaos.misbehave()
    try:
        executor.acquire(1)
        outcomes = await asyncio.wait_for(
            executor.run([Request(id=str(i), prompt="hang:") for i in range(50)]), timeout=5.0
        )
        assert {o.error.error_type for o in outcomes if o.error} == {"timeout"}
        assert executor.hung == 1  # type: ignore[attr-defined]
    finally:
        chaos.stop_misbehaving()
        release.set()
        await executor.aclose()
        chaos.misbehave()


async def test_7_hung_threads_beyond_the_spares_hold_capacity() -> None:
    """#7: a hung thread keeps counting against the thread executor's capacity until it returns."""
    spec = ProcessorSpec(name="python:tests.fixtures.chaos:chaos_sync", hrv=False)
    executor = build_executor(
        "thread", processor=load_processor(spec), spec=spec, retry=RetryPolicy(max_attempts=1),
        timeout_s=0.05, concurrency=1, workers=1,
    )  # fmt: skip
    chaos.misbehave()
    try:
        for _ in range(2):  # one hung thread is covered by the spare, the second is not
            executor.acquire(1)
            await executor.run([Request(id="h", prompt="hang:")])
        assert executor.hung == 2  # type: ignore[attr-defined]
        assert executor.free() > 0, "with 2 hung of 2 spare+worker threads, one batch may still queue"
        executor.acquire(1)
        assert executor.free() == 0, "the second hung thread holds the capacity its batch would need"
        chaos.stop_misbehaving()
        while executor.hung:  # type: ignore[attr-defined]
            executor.capacity_changed.clear()
            await executor.capacity_changed.wait()
        assert executor.free() > 0
    finally:
        chaos.stop_misbehaving()
        await executor.aclose()
        chaos.misbehave()


def test_8_idle_tenants_are_forgotten() -> None:
    """#8: after 20,000 tenants each sent one request and finished, no per-tenant state is left."""
    clock = FakeClock()
    limited = TenantPolicy(RateLimit(100.0, 10), 1000)
    scheduler = FairScheduler(SchedulerPolicy(None, limited), clock)
    encoder = OutputEncoder(results_topic="r", errors_topic="e", encoding="json")
    state = PartitionState("requests", 0, ordered=False)
    for i in range(20_000):
        request = Request(id=str(i), prompt="p", tenant=f"tenant-{i}")
        item = WorkItem(state, i, None, 0, 1, request, None)
        scheduler.push(item)
        (taken,), _ = scheduler.take(1, 1 << 20)
        encoder.result(
            taken,
            Result(id=str(i), content="c", processing_time=0.0, tenant=request.tenant, profile_name="p"),
        )
        scheduler.complete(taken.tenant)
    clock.advance(1.0)  # buckets refill; the next completion sweeps the rest
    scheduler.push(WorkItem(state, 20_000, None, 0, 1, Request(id="x", prompt="p", tenant="last"), None))
    scheduler.take(1, 1 << 20)
    scheduler.complete("last")
    assert scheduler.tenants <= 1
    assert encoder.cached_tenants <= 1024


async def test_9_offsets_that_go_backwards_start_the_partition_afresh() -> None:
    """#9: after the input topic is recreated, offsets restart at 0 and every new record is answered."""
    h = Harness(config())
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req(f"a{i}", "x") for i in range(5)])
        await h.producer.wait_acked(5)
        h.consumer.recreate(TP0)
        h.consumer.feed_values(TP0, [req(f"b{i}", "y") for i in range(3)])
        await h.producer.wait_acked(8)
    ids = [body.id for _, _, body in outputs_in_order(h)]
    assert ids[-3:] == ["b0", "b1", "b2"]
    assert h.consumer.committed == {TP0: 3}, "committed on the new offsets"


async def test_10_errors_of_a_key_follow_its_earlier_records() -> None:
    """#10: a bad record waits behind the running record of its key: outputs stay in offset order."""
    h = Harness(config(batch=BatchSettings(max_size=1, min_size=1, initial_size=1, linger_ms=0.0)))
    async with running(h, TP0):
        h.consumer.feed_values(
            TP0, [req("a0", "block:a0:slow"), b"not json", req("a2", "fine")], keys=[b"A", b"A", b"A"]
        )
        await h.script.started("block:a0:slow")
        await settle(h)  # polls go round: an ungated error (the defect) would be published meanwhile
        assert h.producer.acked == [], "nothing of key A may overtake a0"
        h.script.open("a0")
        await h.producer.wait_acked(3)
    assert [offset for offset, _, _ in outputs_in_order(h)] == [0, 1, 2]


@pytest.mark.parametrize(
    "name",
    ["apiKey", "credentials", "private_key", "client_secret", "auth-token", "sasl_password", "APIKey"],
)
def test_11_secret_names_are_recognised(name: str) -> None:
    """#11: secrets under their common spellings are redacted, not only the *_password style."""
    assert is_secret(name)
    assert redact_tree({"options": {name: "s3cret"}}) == {"options": {name: "***"}}


@pytest.mark.parametrize("name", ["max_tokens", "api_key_env", "tokenizer", "keyword"])
def test_11_ordinary_names_are_not_secrets(name: str) -> None:
    """#11: words that merely contain a secret word are shown."""
    assert not is_secret(name)


def test_11_credentials_in_urls_are_hidden() -> None:
    """#11: a base_url with user:pass@ is shown without them."""
    shown = redact_tree({"base_url": "https://alice:hunter2@models.example/v1", "other": ["ftp://u:p@h/x"]})
    assert shown == {"base_url": "https://***@models.example/v1", "other": ["ftp://***@h/x"]}
