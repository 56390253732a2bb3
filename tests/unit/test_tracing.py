"""Tracing across Kafka: spans of the engine with an in-memory exporter, the trace context in and
out, the audit lines' ids and the processor's context (settings and wiring: test_tracing_setup.py)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from structlog.testing import capture_logs

from stream_service.config import (
    CacheSettings,
    ObservabilitySettings,
    TracingSettings,
)
from stream_service.messages import Request
from stream_service.observability.tracing import NO_TRACING
from stream_service.processors.cache import ResultCache
from stream_service.processors.loader import ProcessorSpec, load_processor
from stream_service.settings import HttpProcessorSettings
from tests.engine_kit import TP0, Harness, config, req, running
from tests.fakes import SentRecord
from tests.fixtures.fake_openai import FakeOpenAI
from tests.otel_kit import PARENT_ID, TRACE_ID, TRACEPARENT, Spans, hex_id, in_memory_tracing


def traced(**sections: Any) -> tuple[Harness, Spans]:
    cfg = config(tracing=TracingSettings(enabled=True), **sections)
    tracing, spans = in_memory_tracing(cfg)
    return Harness(cfg, tracing=tracing, **_harness_args(sections)), spans


def _harness_args(sections: dict[str, Any]) -> dict[str, Any]:
    cache = sections.get("cache")
    return {"cache": ResultCache(100, 60.0)} if cache is not None and cache.enabled else {}


def traceparent_of(rec: SentRecord) -> tuple[str, str, str]:
    """(trace id, parent id, flags) of an output's ``traceparent``."""
    value = rec.header("traceparent")
    assert value is not None, f"no traceparent on {rec.headers}"
    version, trace_id, parent_id, flags = value.decode().split("-")
    assert version == "00"
    return trace_id, parent_id, flags


# ----------------------------------------------------------------------------- parent and child


async def test_request_span_continues_the_input_trace_and_the_output_carries_it() -> None:
    """A traceparent on the input: the request span is its child, the batch span links the request
    span, and the output's traceparent is the input's trace with the request span as parent."""
    h, spans = traced()
    headers = [("traceparent", TRACEPARENT), ("tracestate", b"vendor=abc,other=1")]
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "hello")], keys=[b"k"], headers=headers)
        await h.producer.wait_acked(1)

    span = spans.request(0)
    assert span.kind is SpanKind.CONSUMER
    assert hex_id(span.context.trace_id, 32) == TRACE_ID
    assert span.parent is not None and hex_id(span.parent.span_id, 16) == PARENT_ID
    assert span.parent.is_remote
    assert dict(span.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "requests",
        "messaging.destination.partition.id": "0",
        "messaging.consumer.group.name": "stream-service",
        "messaging.kafka.offset": 0,
        "stream_service.request.id": "r0",
        "stream_service.tenant": "acme",
        "stream_service.outcome": "success",
    }

    (out,) = h.producer.acked
    assert traceparent_of(out) == (TRACE_ID, hex_id(span.context.span_id, 16), "01")
    assert out.header("tracestate") == b"vendor=abc,other=1"

    (batch,) = spans.batches
    assert batch.kind is SpanKind.INTERNAL and batch.parent is None
    assert [link.context.span_id for link in batch.links] == [span.context.span_id]
    assert (batch.attributes or {})["messaging.batch.message_count"] == 1


async def test_input_without_trace_context_starts_a_new_trace() -> None:
    """No traceparent: the request span is a root, and the output carries its context."""
    h, spans = traced()
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "hello")])
        await h.producer.wait_acked(1)
    span = spans.request(0)
    assert span.parent is None
    (out,) = h.producer.acked
    flags = f"{span.context.trace_flags:02x}"  # sampled, and (W3C level 2) a random trace id: 03
    assert traceparent_of(out) == (hex_id(span.context.trace_id, 32), hex_id(span.context.span_id, 16), flags)
    assert out.header("tracestate") is None


MALFORMED = [
    pytest.param([("traceparent", b"not a traceparent")], id="garbage"),
    pytest.param([("traceparent", None)], id="null value"),
    pytest.param([("traceparent", b"")], id="empty"),
    pytest.param([("traceparent", b"\xff\xfe\x00" * 40)], id="not ASCII"),
    pytest.param([("traceparent", TRACEPARENT + b"-" + b"x" * 1_000_000)], id="huge"),
    pytest.param([("traceparent", b"ff-" + TRACEPARENT[3:])], id="version ff"),
    pytest.param([("traceparent", f"00-{'0' * 32}-{PARENT_ID}-01".encode())], id="zero trace id"),
    pytest.param([("traceparent", f"00-{TRACE_ID}-{'0' * 16}-01".encode())], id="zero parent id"),
    pytest.param([("traceparent", TRACEPARENT.upper())], id="upper-case hex"),
    pytest.param([("traceparent", TRACEPARENT + b"-extra")], id="version 00 with more fields"),
    pytest.param([("Traceparent", TRACEPARENT)], id="other case of the name"),
    pytest.param([("tracestate", b"vendor=abc")], id="tracestate alone"),
]


@pytest.mark.parametrize("headers", MALFORMED)
async def test_malformed_trace_context_starts_a_new_root_and_the_record_is_answered(
    headers: list[tuple[str, bytes | None]],
) -> None:
    """Whatever a traceparent header holds, the request gets a new root span and its answer."""
    h, spans = traced()
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "hello")], headers=headers)
        await h.producer.wait_acked(1)
    span = spans.request(0)
    assert span.parent is None
    (out,) = h.producer.acked
    assert out.topic == "results"
    assert traceparent_of(out)[:2] == (hex_id(span.context.trace_id, 32), hex_id(span.context.span_id, 16))


@pytest.mark.parametrize(
    "tracestate",
    [
        pytest.param(b"not a valid member", id="invalid member"),
        pytest.param(b"\xff" * 100, id="not ASCII"),
        pytest.param(b"a=b," * 10_000, id="huge"),
        pytest.param(b"k=v,k=w", id="duplicate key"),
    ],
)
async def test_bad_tracestate_keeps_the_parent_and_drops_the_state(tracestate: bytes) -> None:
    """A valid traceparent with a tracestate that is not one: the parent is kept, the state is not."""
    h, spans = traced()
    async with running(h, TP0):
        headers = [("traceparent", TRACEPARENT), ("tracestate", tracestate)]
        h.consumer.feed_values(TP0, [req("r0", "hello")], headers=headers)
        await h.producer.wait_acked(1)
    span = spans.request(0)
    assert span.parent is not None and hex_id(span.parent.span_id, 16) == PARENT_ID
    (out,) = h.producer.acked
    assert traceparent_of(out)[0] == TRACE_ID
    assert out.header("tracestate") is None


async def test_the_last_traceparent_header_wins() -> None:
    """Two traceparent headers: the last one is the parent (as for content-type)."""
    h, spans = traced()
    other = f"00-{'a' * 32}-{'b' * 16}-01".encode()
    async with running(h, TP0):
        headers = [("traceparent", other), ("traceparent", TRACEPARENT)]
        h.consumer.feed_values(TP0, [req("r0", "hello")], headers=headers)
        await h.producer.wait_acked(1)
    parent = spans.request(0).parent
    assert parent is not None and hex_id(parent.span_id, 16) == PARENT_ID


async def test_with_the_sdk_disabled_outputs_pass_the_upstream_context_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_SDK_DISABLED=true: no spans; an output carries its input's traceparent unchanged, or none."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    h, spans = traced()
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "a")], headers=[("traceparent", TRACEPARENT)])
        h.consumer.feed_values(TP0, [req("r1", "b")])
        await h.producer.wait_acked(2)
    assert spans.all == ()
    by_offset = h.outputs()
    assert by_offset[(0, 0)][0].header("traceparent") == TRACEPARENT
    assert by_offset[(0, 1)][0].header("traceparent") is None


# ----------------------------------------------------------------------------- outputs without running


async def test_inputs_answered_without_running_get_request_spans() -> None:
    """Undecodable input and a cache hit also get request spans; an error output marks its span."""
    h, spans = traced(cache=CacheSettings(enabled=True))
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [b"{not json", req("r1", "same")], headers=[("traceparent", TRACEPARENT)])
        await h.producer.wait_acked(2)
        h.consumer.feed_values(TP0, [req("r2", "same")], headers=[("traceparent", TRACEPARENT)])
        await h.producer.wait_acked(3)

    bad, first, cached = spans.request(0), spans.request(1), spans.request(2)
    assert bad.status.status_code is StatusCode.ERROR
    assert (bad.attributes or {})["error.type"] == "validation"
    assert (bad.attributes or {})["stream_service.outcome"] == "error"
    assert (first.attributes or {})["stream_service.outcome"] == "success"
    assert (cached.attributes or {})["stream_service.outcome"] == "cached"
    for span in (bad, first, cached):
        assert span.parent is not None and hex_id(span.parent.span_id, 16) == PARENT_ID
    by_offset = h.outputs()
    assert traceparent_of(by_offset[(0, 0)][0])[1] == hex_id(bad.context.span_id, 16)
    assert traceparent_of(by_offset[(0, 2)][0])[1] == hex_id(cached.context.span_id, 16)
    assert len(spans.batches) == 1, "only the request that ran made a batch"


async def test_failed_request_marks_its_span_and_its_audit_line() -> None:
    """A processor failure: span status ERROR with error.type; request.failed carries the span's ids;
    batch.completed carries the batch span's."""
    h, spans = traced(observability=ObservabilitySettings(metrics_port=None, audit_requests=True))
    with capture_logs() as logs:
        async with running(h, TP0):
            h.consumer.feed_values(TP0, [req("r0", "fail:no"), req("r1", "fine")])
            await h.producer.wait_acked(2)
    failed_span, ok_span = spans.request(0), spans.request(1)
    assert failed_span.status.status_code is StatusCode.ERROR
    assert (failed_span.attributes or {})["error.type"] == "unknown"

    def ids(span: Any) -> dict[str, str]:
        return {"trace_id": hex_id(span.context.trace_id, 32), "span_id": hex_id(span.context.span_id, 16)}

    (failed,) = [e for e in logs if e["event"] == "request.failed"]
    assert {k: failed[k] for k in ("trace_id", "span_id")} == ids(failed_span)
    (completed,) = [e for e in logs if e["event"] == "request.completed"]
    assert {k: completed[k] for k in ("trace_id", "span_id")} == ids(ok_span)
    batch_lines = [e for e in logs if e["event"] == "batch.completed"]
    batch_ids = {ids(b)["span_id"]: ids(b) for b in spans.batches}
    assert batch_lines and all(batch_ids[e["span_id"]]["trace_id"] == e["trace_id"] for e in batch_lines)


# ----------------------------------------------------------------------------- the processor's context


async def test_async_processor_runs_each_request_in_its_span() -> None:
    """While an async processor runs a request, its request span is the current span and its ids
    are in structlog's context."""
    seen: dict[str, tuple[int, dict[str, Any]]] = {}

    def behaviour(request: Request, attempt: int) -> str:
        seen[request.id] = (
            trace.get_current_span().get_span_context().span_id,
            structlog.contextvars.get_contextvars(),
        )
        return request.prompt

    h, spans = traced()
    h.processor.behaviour = behaviour
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "a"), req("r1", "b")])
        await h.producer.wait_acked(2)
    for offset, request_id in enumerate(("r0", "r1")):
        span = spans.request(offset)
        span_id, bound = seen[request_id]
        assert span_id == span.context.span_id
        assert bound == {"trace_id": hex_id(span.context.trace_id, 32), "span_id": hex_id(span_id, 16)}
    assert structlog.contextvars.get_contextvars() == {}, "nothing leaks into the caller's context"


@pytest.mark.parametrize("enabled", [True, False], ids=["tracing on", "tracing off"])
async def test_http_processor_request_carries_the_request_span(enabled: bool) -> None:
    """With tracing on, the chat-completions POST carries the request span's traceparent; off, none."""
    async with FakeOpenAI() as server:
        spec = ProcessorSpec(
            name="http",
            hrv=False,
            http=HttpProcessorSettings(base_url=server.base_url),
            trace_requests=enabled,
        )
        processor = load_processor(spec)
        cfg = config(tracing=TracingSettings(enabled=enabled))
        tracing, spans = in_memory_tracing(cfg)
        h = Harness(cfg, processor=processor, tracing=tracing if enabled else NO_TRACING)
        try:
            async with running(h, TP0):
                h.consumer.feed_values(TP0, [req("r0", "hi")], headers=[("traceparent", TRACEPARENT)])
                await h.producer.wait_acked(1)
        finally:
            await processor.aclose()
        (sent,) = server.requests
        if not enabled:
            assert "traceparent" not in sent.headers
            assert h.producer.acked[0].header("traceparent") is None
            return
        span = spans.request(0)
        assert sent.headers["traceparent"] == f"00-{TRACE_ID}-{hex_id(span.context.span_id, 16)}-01"
