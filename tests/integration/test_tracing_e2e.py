"""Tracing through a real broker: the service as a process, its spans printed on stderr
(``OTEL_TRACES_EXPORTER=console``), the trace context read back from the output records."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.integration.harness import (
    Outputs,
    ServiceProcess,
    fresh_topics,
    partition_count,
    stop_consumer,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TRACED = 40  # inputs with an upstream traceparent
UNTRACED = 10  # inputs without one
MALFORMED = [b"garbage", b"00-" + b"z" * 32 + b"-" + b"1" * 16 + b"-01", b"\xff" * 70]
ANSWER_TIMEOUT_S = 90.0


def upstream(rng: random.Random) -> tuple[str, str]:
    """A random upstream (trace id, span id) pair, as lower-case hex."""
    return f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"


async def produce_traced(bootstrap: str, topic: str) -> dict[str, tuple[str, str] | None]:
    """The inputs: request id -> the upstream (trace id, span id) its traceparent names, or None."""
    rng = random.Random(15)
    sent: dict[str, tuple[str, str] | None] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        total = TRACED + UNTRACED + len(MALFORMED)
        for i in range(total):
            request_id = f"req-{i}"
            headers: list[tuple[str, bytes]] = [("content-type", b"application/json")]
            if i < TRACED:
                trace_id, span_id = sent[request_id] = upstream(rng)
                headers += [("traceparent", f"00-{trace_id}-{span_id}-01".encode()), ("tracestate", b"up=1")]
            else:
                sent[request_id] = None
                if i >= TRACED + UNTRACED:
                    headers.append(("traceparent", MALFORMED[i - TRACED - UNTRACED]))
            body = json.dumps({"id": request_id, "prompt": f"prompt {i}"}).encode()
            await producer.send_and_wait(topic, body, key=request_id.encode(), headers=headers)
    finally:
        await producer.stop()
    return sent


async def output_headers(bootstrap: str, topic: str, count: int) -> dict[str, dict[str, bytes]]:
    """request id -> headers of the first ``count`` records of ``topic`` (read from the start)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: dict[str, dict[str, bytes]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(found) < count:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for rec in records:
                    headers = {name: value for name, value in rec.headers}
                    found[headers["request-id"].decode()] = headers
    finally:
        await stop_consumer(consumer)
    return found


def spans_of(stderr: bytes) -> list[dict[str, Any]]:
    """The console exporter's spans: one JSON object per stderr line (other lines skipped)."""
    spans = []
    for line in stderr.splitlines():
        try:
            span = json.loads(line)
        except ValueError:
            continue
        if isinstance(span, dict) and "context" in span and "kind" in span:
            spans.append(span)
    return spans


def bare(hex_id: str | None) -> str | None:
    """The console exporter writes ids as ``0x...``; the wire as bare hex."""
    return hex_id.removeprefix("0x") if hex_id is not None else None


async def test_trace_context_flows_from_input_through_the_spans_to_the_outputs(kafka_bootstrap: str) -> None:
    """Through a real broker: each request span is the child of its input's traceparent (or a root for
    none or a malformed one), its output carries the same trace with the request span as parent, the
    batch spans link the request spans, and request.completed carries the request span's ids."""
    topics = await fresh_topics(kafka_bootstrap, input_partitions=2, output_partitions=2)
    sent = await produce_traced(kafka_bootstrap, topics.input)
    args = (
        "--processor",
        "echo",
        "--set",
        "tracing.enabled=true",
        "--set",
        "observability.audit_requests=true",
    )
    service = ServiceProcess(kafka_bootstrap, topics, *args, env={"OTEL_TRACES_EXPORTER": "console"})
    await service.start()
    try:
        async with Outputs(kafka_bootstrap, topics) as out:
            await out.until(out.answered(len(sent)), ANSWER_TIMEOUT_S, "all requests answered")
    finally:
        code = await service.stop()
    assert code == 0, service.stderr.decode()[-3000:]
    headers = await output_headers(kafka_bootstrap, topics.results, len(sent))

    spans = spans_of(service.stderr)  # the provider is flushed at shutdown
    requests = {
        span["attributes"]["stream_service.request.id"]: span
        for span in spans
        if span["name"] == f"process {topics.input}"
    }
    assert set(requests) == set(sent)
    for request_id, parent in sent.items():
        span = requests[request_id]
        assert span["kind"] == "SpanKind.CONSUMER"
        assert span["attributes"]["messaging.system"] == "kafka"
        assert span["attributes"]["messaging.consumer.group.name"] == topics.group
        trace_id, span_id = bare(span["context"]["trace_id"]), bare(span["context"]["span_id"])
        if parent is None:
            assert span["parent_id"] is None, "no or a malformed traceparent: a new root"
        else:
            assert (trace_id, bare(span["parent_id"])) == parent
        version, out_trace, out_parent, _ = headers[request_id]["traceparent"].decode().split("-")
        assert (version, out_trace, out_parent) == ("00", trace_id, span_id)
        assert headers[request_id].get("tracestate") == (b"up=1" if parent is not None else None)

    linked = {
        bare(link["context"]["span_id"])
        for span in spans
        if span["name"] == f"execute {topics.input}"
        for link in span["links"]
    }
    assert linked == {bare(span["context"]["span_id"]) for span in requests.values()}

    completed = {
        line["request_id"]: line for line in service.lines if line.get("event") == "request.completed"
    }
    for request_id, span in requests.items():
        line = completed[request_id]
        assert (line["trace_id"], line["span_id"]) == (
            bare(span["context"]["trace_id"]),
            bare(span["context"]["span_id"]),
        )
