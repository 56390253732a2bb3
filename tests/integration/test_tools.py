"""Integration tests of the operator tools against a real broker: produce, reconcile, report."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import uuid
import warnings
import weakref
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from stream_service.messages import ErrorRecord, Request, Result
from stream_service.tools import produce, reconcile, report
from stream_service.tools.produce import produce_requests
from tests.conftest import TopicFactory
from tests.integration.harness import read_all

pytestmark = pytest.mark.integration


class Topics(msgspec.Struct):
    input: str
    results: str
    errors: str


@pytest.fixture
async def topics(topic_factory: TopicFactory) -> Topics:
    return Topics(
        input=await topic_factory(3, prefix="tools-in"),
        results=await topic_factory(2, prefix="tools-results"),
        errors=await topic_factory(1, prefix="tools-errors"),
    )


def _lineage(record: Any) -> list[tuple[str, bytes]]:
    return [
        ("source-topic", record.topic.encode()),
        ("source-partition", str(record.partition).encode()),
        ("source-offset", str(record.offset).encode()),
        ("content-type", b"application/json"),
    ]


def _answer(record: Any, index: int) -> tuple[str, bytes]:
    """A fake service answer: a Result for a valid request, an ErrorRecord for anything else."""
    try:
        request = msgspec.json.decode(record.value, type=Request)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        error = ErrorRecord(id=None, error=f"invalid request: {exc}"[:60], error_type="validation")
        return "error", msgspec.json.encode(error)
    result = Result(
        id=request.id,
        content="answer",
        hrv_vector=[0.5] * 8,
        processing_time=0.01 * (index % 5 + 1),
        tenant=request.tenant,
        profile_name=request.profile_name,
    )
    return "result", msgspec.json.encode(result)


async def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    for tool in (produce, reconcile, report):
        tool.register(subparsers)
    args = parser.parse_args(argv)
    code = await asyncio.to_thread(args.handler, args)  # the handler runs its own event loop
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_reconcile_finds_the_one_missing_offset_and_report_adds_up(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    """With outputs for all inputs but one, reconcile names that offset and exits 1; report adds up."""
    stats = await produce_requests(
        kafka_bootstrap, topics.input, 90, tenants=["acme", "globex"], bad_ratio=0.2, profiles=["p"], seed=11
    )
    assert stats.sent == 90 and sum(stats.partitions.values()) == 90
    inputs = await read_all(kafka_bootstrap, topics.input)
    assert len(inputs) == 90
    skipped = next(r for r in inputs if r.partition == 1 and r.offset == 4)
    duplicated = next(r for r in inputs if r.partition == 2 and r.offset == 0)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    written: list[tuple[str, bytes]] = []
    try:
        for index, record in enumerate([r for r in inputs if r is not skipped] + [duplicated]):
            kind, value = _answer(record, index)
            written.append((kind, value))
            topic = topics.results if kind == "result" else topics.errors
            await producer.send(topic, value, key=record.key, headers=_lineage(record))
        await producer.flush()
    finally:
        await producer.stop()

    common = ["--bootstrap-servers", kafka_bootstrap, "--input-topic", topics.input]
    outputs = ["--results-topic", topics.results, "--errors-topic", topics.errors]
    code, out, _err = await _run(["reconcile", *common, *outputs, "--json"], capsys)
    verdict = json.loads(out)
    assert code == 1
    assert (verdict["expected"], verdict["missing"], verdict["contiguous"]) == (90, 1, False)
    assert (verdict["duplicated_offsets"], verdict["duplicate_outputs"]) == (1, 1)
    missing = {p["partition"]: p["missing_ranges"] for p in verdict["partitions"] if p["missing_ranges"]}
    assert missing == {1: [[4, 4]]}

    code, out, _err = await _run(["reconcile", *common, *outputs, "--assume-contiguous"], capsys)
    assert code == 1 and "missing in partition 1: 4" in out

    code, out, _err = await _run(["reconcile", *common, *outputs, "--partitions", "0,2", "--json"], capsys)
    assert code == 0 and json.loads(out)["ok"] is True

    code, out, _err = await _run(["reconcile", *common, *outputs, "--to-offset", "4"], capsys)
    assert code == 0 and out.splitlines()[-1].startswith("OK")

    code, out, _err = await _run(
        ["report", "--bootstrap-servers", kafka_bootstrap, *outputs, "--json"], capsys
    )
    assert code == 0
    figures = json.loads(out)
    results = [msgspec.json.decode(v, type=Result) for kind, v in written if kind == "result"]
    assert figures["overview"]["total"] == len(written) == 90
    assert figures["overview"]["successful"] == len(results)
    assert figures["overview"]["failed"] == len(written) - len(results) > 0
    assert figures["errors"]["by_type"] == {"validation": len(written) - len(results)}
    assert figures["performance"]["mean_s"] == pytest.approx(
        sum(r.processing_time for r in results) / len(results)
    )
    assert figures["performance"]["wall_seconds"] is None or figures["performance"]["wall_seconds"] >= 0
    hrv = {stats["profile"]: stats for stats in figures["hrv"]}
    assert hrv["p"]["mean_overall"] == pytest.approx(0.5)


async def test_reconcile_reads_real_offsets_across_transaction_markers(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    """Transaction markers take offsets: the default mode skips them, --assume-contiguous does not."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"tools-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        for txn in range(3):
            async with producer.transaction():
                for i in range(4):
                    await producer.send(topics.input, f"{txn}-{i}".encode(), partition=0)
    finally:
        await producer.stop()
    inputs = await read_all(kafka_bootstrap, topics.input)
    assert len(inputs) == 12 and max(r.offset for r in inputs) > 11  # markers took offsets
    answer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await answer.start()
    try:
        for record in inputs:
            await answer.send(topics.errors, b"{}", headers=_lineage(record))
        await answer.flush()
    finally:
        await answer.stop()
    argv = ["reconcile", "--bootstrap-servers", kafka_bootstrap, "--input-topic", topics.input]
    argv += ["--results-topic", topics.results, "--errors-topic", topics.errors, "--partitions", "0"]
    code, out, _err = await _run([*argv, "--json"], capsys)
    assert code == 0, out
    assert json.loads(out)["expected"] == 12
    code, out, _err = await _run([*argv, "--assume-contiguous", "--json"], capsys)
    assert code == 1 and json.loads(out)["missing"] == 3  # the three commit markers


async def test_produce_command_and_rate(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    """The produce command sends --count records; with --rate it takes about count/rate seconds."""
    argv = ["produce", "--bootstrap-servers", kafka_bootstrap, "--topic", topics.input, "--count", "200"]
    code, out, _err = await _run([*argv, "--rate", "1000", "--tenants", "3", "--json"], capsys)
    stats = json.loads(out)
    assert code == 0
    assert stats["sent"] == 200 and set(stats["tenants"]) == {"tenant-0", "tenant-1", "tenant-2"}
    assert 0.15 <= stats["elapsed_s"] < 2.0
    assert len(await read_all(kafka_bootstrap, topics.input)) == 200


async def test_produce_is_fast(kafka_bootstrap: str, topics: Topics) -> None:
    """Unpaced, produce_requests sends at least 20k records/s (about 100k/s on the dev machine)."""
    stats = await produce_requests(kafka_bootstrap, topics.input, 50_000, tenants=["a", "b"], seed=1)
    assert stats.sent == 50_000
    assert stats.rate_per_s > 20_000, stats.rate_per_s


class _SlowAcks(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
    """A real producer whose acknowledgements arrive 40 ms late, like a loaded broker's."""

    ACK_DELAY_S = 0.04

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        delivered = await super().send_batch(batch, topic, partition=partition)
        return asyncio.ensure_future(self._late(delivered))

    async def _late(self, delivered: Any) -> Any:
        result = await delivered
        await asyncio.sleep(self.ACK_DELAY_S)  # the simulated broker latency, not a synchronisation
        return result


async def test_paced_produce_meets_the_offered_rate_with_slow_acks(
    kafka_bootstrap: str, topics: Topics
) -> None:
    """At --rate 1000 with acks 40 ms late, 2000 records still go out at about 1000/s."""
    stats = await produce_requests(kafka_bootstrap, topics.input, 2000, rate=1000.0, make_producer=_SlowAcks)
    assert stats.sent == 2000
    assert len(await read_all(kafka_bootstrap, topics.input)) == 2000
    assert stats.elapsed_s >= 1.9, stats.elapsed_s  # not faster than asked
    # Awaiting every chunk's acks before the next reached only about a fifth of the rate.
    assert stats.rate_per_s > 750, stats.rate_per_s


class _CountedSends(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
    """A real producer that signals once it has handed over a few batches."""

    sending: asyncio.Event

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        future = await super().send_batch(batch, topic, partition=partition)
        self.sending.set()
        return future


async def _cancel_while_sending(bootstrap: str, topic: str) -> weakref.ref[AIOKafkaProducer]:
    """Cancel a paced produce_requests once it is sending; a weak reference to its producer.

    Run as a task of its own: the CancelledError (whose traceback holds the producer) is thrown
    into this task's step, and released only when that step ends.
    """
    sending = asyncio.Event()
    made: list[weakref.ref[AIOKafkaProducer]] = []

    def make(**options: Any) -> Any:
        producer = _CountedSends(**options)
        producer.sending = sending
        made.append(weakref.ref(producer))
        return producer

    task = asyncio.create_task(produce_requests(bootstrap, topic, 100_000, rate=1000.0, make_producer=make))
    await sending.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return made[0]


async def test_produce_cancelled_while_sending_closes_its_producer(
    kafka_bootstrap: str, topics: Topics
) -> None:
    """Cancelling produce_requests mid-run stops its producer: no unclosed producer or connection."""
    producer = await asyncio.create_task(_cancel_while_sending(kafka_bootstrap, topics.input))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert producer() is None, "the producer must be collected for this check to mean anything"
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_tools_exit_2_on_a_missing_topic(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A topic that does not exist is a clean error (exit 2), not a traceback."""
    missing = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    argv = ["reconcile", "--bootstrap-servers", kafka_bootstrap, "--input-topic", missing]
    code, _out, err = await _run(argv, capsys)
    assert code == 2
    assert err.startswith("reconcile: topic") and "does not exist" in err
