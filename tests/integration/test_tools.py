"""Integration tests of the operator tools against a real broker: produce, reconcile, report."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_service.messages import ErrorRecord, Request, Result
from stream_service.tools import produce, reconcile, report
from stream_service.tools.lineage import topic_partitions
from stream_service.tools.produce import produce_requests
from tests.conftest import TopicFactory

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


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p) for p in await topic_partitions({"bootstrap_servers": bootstrap}, topic)
        ]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


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
    inputs = await _read_all(kafka_bootstrap, topics.input)
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
    inputs = await _read_all(kafka_bootstrap, topics.input)
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
    assert len(await _read_all(kafka_bootstrap, topics.input)) == 200


async def test_produce_is_fast(kafka_bootstrap: str, topics: Topics) -> None:
    """Unpaced, produce_requests sends at least 20k records/s (about 100k/s on the dev machine)."""
    stats = await produce_requests(kafka_bootstrap, topics.input, 50_000, tenants=["a", "b"], seed=1)
    assert stats.sent == 50_000
    assert stats.rate_per_s > 20_000, stats.rate_per_s


async def test_tools_exit_2_on_a_missing_topic(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A topic that does not exist is a clean error (exit 2), not a traceback."""
    missing = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    argv = ["reconcile", "--bootstrap-servers", kafka_bootstrap, "--input-topic", missing]
    code, _out, err = await _run(argv, capsys)
    assert code == 2
    assert err.startswith("reconcile: topic") and "does not exist" in err
