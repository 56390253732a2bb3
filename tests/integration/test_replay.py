"""``stream-service replay`` on a real broker: the real CLI, with and without the service running."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import RecordMetadata

from stream_service.messages import ErrorRecord, Request
from stream_service.tools.reconcile import reconcile_topics
from tests.conftest import TopicFactory
from tests.fixtures.replay_plugin import FAIL_IDS_VARIABLE
from tests.integration.harness import (
    REPO,
    Outputs,
    ServiceProcess,
    Topics,
    produce,
    read_all,
    unique,
    workload,
)

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 120


async def replay_cli(bootstrap: str, input_topic: str, errors_topic: str, *args: str) -> tuple[int, Any, str]:
    """Run ``stream-service replay --json`` as a process; its exit code, JSON summary and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream_service", "replay", "--bootstrap-servers", bootstrap,
        "--input-topic", input_topic, "--errors-topic", errors_topic, "--json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    async with asyncio.timeout(CLI_TIMEOUT_S):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    summary = json.loads(out) if out.strip() else None
    return proc.returncode, summary, err.decode()


async def test_failed_requests_replayed_by_the_cli_all_get_a_result(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """Ids that failed once are replayed by the CLI; reconcile finds all answered, each id has a Result."""
    topics = Topics(
        await topic_factory(3, prefix="replay-in"),
        await topic_factory(2, prefix="replay-results"),
        await topic_factory(1, prefix="replay-errors"),
        unique("replay-group"),
    )
    total = 300
    failing = {f"req-{i}" for i in range(0, total, 15)}
    assert await produce(kafka_bootstrap, topics.input, workload(total).records) == total
    service = await ServiceProcess(
        kafka_bootstrap, topics,
        "--processor", "python:tests.fixtures.replay_plugin:flaky_once", "--set", "retry.max_attempts=1",
        env={FAIL_IDS_VARIABLE: ",".join(sorted(failing))},
    ).start()  # fmt: skip
    try:
        async with Outputs(kafka_bootstrap, topics) as outputs:
            await outputs.until(outputs.answered(total), 90, "every input answered once")
            errors = [o for o in outputs.items if o.topic == topics.errors]
            assert {o.request_id for o in errors} == failing
            assert {o.value["error_type"] for o in errors} == {"connection"}

            code, plan, _ = await replay_cli(kafka_bootstrap, topics.input, topics.errors, "--dry-run")
            assert code == 0 and plan["dry_run"] is True
            assert (plan["planned"], plan["replayed"], plan["errors_matched"]) == (20, 0, {"connection": 20})

            code, summary, err = await replay_cli(
                kafka_bootstrap, topics.input, topics.errors, "--rate", "200"
            )
            assert code == 0, err
            assert (summary["replayed"], summary["failed"], summary["ok"]) == (20, 0, True)
            assert "replayed 20/20" in err  # the progress line's last figures
            await outputs.until(outputs.answered(total + 20), 90, "every replay answered")
            await outputs.settle()
            results = [o for o in outputs.items if o.topic == topics.results]
        assert failing <= {o.request_id for o in results}
        assert {o.request_id for o in results} == {f"req-{i}" for i in range(total)}

        verdict = await reconcile_topics(
            {"bootstrap_servers": kafka_bootstrap}, topics.input, [topics.results, topics.errors]
        )
        assert (verdict.ok, verdict.expected, verdict.missing) == (True, total + 20, 0)

        code, again, err = await replay_cli(kafka_bootstrap, topics.input, topics.errors)
        assert code == 0, err
        assert (again["replayed"], again["skipped"]) == (0, {"already-replayed": 20})
    finally:
        await service.stop()


def error_value(request_id: str, error_type: str, encoding: str) -> bytes:
    error = ErrorRecord(id=request_id, error="failed", error_type=error_type)  # type: ignore[arg-type]
    return msgspec.msgpack.encode(error) if encoding == "msgpack" else msgspec.json.encode(error)


async def write_error(
    producer: AIOKafkaProducer,
    errors_topic: str,
    source: tuple[str, int, int],
    request_id: str,
    error_type: str = "timeout",
    encoding: str = "msgpack",
) -> None:
    """An error record as the service writes it: lineage headers naming ``source``."""
    topic, partition, offset = source
    headers = [
        ("source-topic", topic.encode()),
        ("source-partition", str(partition).encode()),
        ("source-offset", str(offset).encode()),
        ("content-type", f"application/{encoding}".encode()),
        ("request-id", request_id.encode()),
    ]
    await producer.send_and_wait(errors_topic, error_value(request_id, error_type, encoding), headers=headers)


def header(record: Any, name: str) -> bytes | None:
    return next((value for key, value in record.headers if key == name), None)


async def test_replays_copy_the_record_carry_the_chain_and_stop_at_max_replays(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """Copies are exact plus replay headers, chains count on, skips are reported, exit 1 flags the lost."""
    input_topic = await topic_factory(2, prefix="replay-in")
    errors_topic = await topic_factory(1, prefix="replay-errors")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        inputs: dict[str, RecordMetadata] = {}
        for i in range(8):
            value = msgspec.msgpack.encode(Request(id=f"req-{i}", prompt=f"prompt {i}"))
            headers = [("content-type", b"application/msgpack"), ("trace-id", f"t{i}".encode())]
            inputs[f"req-{i}"] = await producer.send_and_wait(
                input_topic, value, key=f"k{i}".encode(), partition=i % 2, headers=headers
            )

        def at(request_id: str) -> tuple[str, int, int]:
            return input_topic, inputs[request_id].partition, inputs[request_id].offset

        for request_id in ("req-1", "req-2", "req-3", "req-3"):  # req-3 failed twice (redelivery)
            await write_error(producer, errors_topic, at(request_id), request_id)
        await write_error(producer, errors_topic, at("req-4"), "req-4", "rate_limit", encoding="json")
        await write_error(producer, errors_topic, at("req-5"), "req-5", "validation")  # not replayed
        await write_error(producer, errors_topic, ("another-topic", 0, 7), "req-7")

        code, first, err = await replay_cli(kafka_bootstrap, input_topic, errors_topic)
        assert code == 0, err
        assert (first["replayed"], first["skipped"]) == (4, {"duplicate": 1, "other-topic": 1})
        assert first["errors_matched"] == {"rate_limit": 1, "timeout": 5}

        records = await read_all(kafka_bootstrap, input_topic)
        originals = {(r.partition, r.offset): r for r in records if header(r, "replay-of") is None}
        copies = {request_id_of(r): r for r in records if header(r, "replay-of") is not None}
        assert sorted(copies) == ["req-1", "req-2", "req-3", "req-4"]
        for request_id, copy in copies.items():
            original = originals[(inputs[request_id].partition, inputs[request_id].offset)]
            assert (copy.partition, copy.key, copy.value) == (
                original.partition,
                original.key,
                original.value,
            )
            assert list(copy.headers) == [
                *original.headers,
                ("replay-of", f"{input_topic}/{original.partition}/{original.offset}".encode()),
                ("replay-count", b"1"),
            ]

        # The copies of req-1 and req-2 fail too: replaying them counts on from the original record.
        for request_id in ("req-1", "req-2"):
            await write_error(producer, errors_topic, (input_topic, copies[request_id].partition,
                                                       copies[request_id].offset), request_id)  # fmt: skip
        code, second, err = await replay_cli(kafka_bootstrap, input_topic, errors_topic, "--max-replays", "2")
        assert code == 0, err
        assert second["replayed"] == 2
        assert second["skipped"] == {"already-replayed": 4, "duplicate": 1, "other-topic": 1}
        records = await read_all(kafka_bootstrap, input_topic)
        again = [r for r in records if header(r, "replay-count") == b"2"]
        assert sorted(request_id_of(r) for r in again) == ["req-1", "req-2"]
        for copy in again:
            origin = inputs[request_id_of(copy)]
            assert header(copy, "replay-of") == f"{input_topic}/{origin.partition}/{origin.offset}".encode()

        # req-1 fails a third time: beyond --max-replays 2. req-0 failed, but retention deleted it.
        second_copy = next(r for r in again if request_id_of(r) == "req-1")
        await write_error(
            producer, errors_topic, (input_topic, second_copy.partition, second_copy.offset), "req-1"
        )
        await write_error(producer, errors_topic, at("req-0"), "req-0")
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(input_topic, 0): RecordsToDelete(before_offset=1)})
    finally:
        await admin.close()

    code, third, err = await replay_cli(kafka_bootstrap, input_topic, errors_topic, "--max-replays", "2")
    assert code == 1, err
    assert third["replayed"] == 0 and third["ok"] is False
    assert third["skipped"] == {
        "already-replayed": 6, "duplicate": 1, "expired": 1, "max-replays": 1, "other-topic": 1,
    }  # fmt: skip
    code, _, err = await replay_cli(kafka_bootstrap, input_topic, errors_topic, "--error-type", "validation")
    assert code == 2 and "without --force" in err


def request_id_of(record: Any) -> str:
    """The request id of an input record (msgpack)."""
    return msgspec.msgpack.decode(record.value, type=Request).id
