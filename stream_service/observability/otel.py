"""OpenTelemetry tracing: spans per request and per batch, W3C trace context in and out.

Imported only when ``tracing.enabled`` (by :func:`~stream_service.observability.tracing.build_tracing`):
it imports the OpenTelemetry API and SDK (the ``stream-service[otel]`` extra). Span names and
attributes follow the OpenTelemetry messaging semantic conventions:

=============================  ===========================================================
request span                   ``process <input topic>``, kind CONSUMER, parent: the input's
                               ``traceparent``/``tracestate`` (a new root when absent or invalid)
  attributes at the start      ``messaging.system`` = ``kafka``, ``messaging.operation.type`` and
                               ``messaging.operation.name`` = ``process``,
                               ``messaging.destination.name``, ``messaging.destination.partition.id``,
                               ``messaging.kafka.offset``, ``messaging.consumer.group.name``;
                               ``stream_service.request.id`` and ``stream_service.tenant`` when
                               the record decoded
  attributes at the end        ``stream_service.outcome`` (``success``, ``error``, ``cached``);
                               ``error.type`` and status ERROR for an error record
batch span                     ``execute <input topic>``, kind INTERNAL, a root linked to the
                               request spans of its batch (at most ``OTEL_SPAN_LINK_COUNT_LIMIT``,
                               128 by default), ``messaging.batch.message_count``
=============================  ===========================================================

The provider is this instance's own; a service makes it the global one too (when no other is
set), so a processor's own spans (``opentelemetry.trace.get_tracer(...)``) are children of the
request span and exported with it. The sampler comes from ``OTEL_TRACES_SAMPLER`` (default:
parent-based, always on), the OTLP exporter's endpoint and headers from ``OTEL_EXPORTER_OTLP_*``,
the batch export limits from ``OTEL_BSP_*``: the SDK reads them itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from stream_service import __version__
from stream_service.messages import Request
from stream_service.observability.tracing import (
    AckedOutput,
    AdmittedItem,
    BatchTrace,
    RequestTrace,
    TracedItem,
    Tracing,
)
from stream_service.settings import TracingSettings
from stream_service.wire import TRACEPARENT, TRACESTATE

__all__ = ["OtelTracing", "provider_for"]

DEFAULT_SERVICE_NAME = "stream-service"
INSTRUMENTATION = "stream_service"
# Longer values are not trace context: a new root (the propagator would refuse them too, with a
# warning per record).
MAX_TRACEPARENT_BYTES = 512
MAX_TRACESTATE_BYTES = 8192
OUTCOME = "stream_service.outcome"
_ROOT = Context()  # no parent: a new trace


def provider_for(settings: TracingSettings) -> TracerProvider:
    """This instance's tracer provider: its resource, the sampler of ``OTEL_TRACES_SAMPLER``, and
    a batch span processor with the exporter ``settings.exporter`` names (none for ``none``)."""
    attributes: dict[str, str] = {"service.version": __version__}
    if settings.service_name:
        attributes["service.name"] = settings.service_name
    resource = Resource.create(attributes)  # + OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    exporter = _exporter(settings.exporter)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(kind: str) -> SpanExporter | None:
    if kind == "otlp":
        # OTLP over HTTP/protobuf (the SDKs' default protocol): OTEL_EXPORTER_OTLP_ENDPOINT, default
        # http://localhost:4318; OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if kind == "console":
        # One JSON object per line on stderr: stdout holds the log lines, one JSON object each.
        return ConsoleSpanExporter(out=sys.stderr, formatter=_one_line)
    return None


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _hex_ids(span: trace.Span) -> tuple[str, str, trace.SpanContext]:
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", ctx


class OtelTracing(Tracing):
    """Request and batch spans from ``provider``; see the module docstring for what they hold.

    Guarantees: :meth:`start` never raises for anything a record holds (a malformed, null,
    non-ASCII or huge ``traceparent`` or ``tracestate`` starts a new root, and the record is
    processed like any other); every request span started is ended once its output is
    acknowledged (a record dropped on a rebalance is read again by the next owner, under a new
    span, and its own span is never exported).
    """

    enabled = True

    def __init__(self, provider: TracerProvider, *, input_topic: str, group_id: str) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer(INSTRUMENTATION, __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._request_name = f"process {input_topic}"
        self._batch_name = f"execute {input_topic}"
        self._batch_attributes = {
            "messaging.system": "kafka",
            "messaging.destination.name": input_topic,
            "messaging.consumer.group.name": group_id,
        }
        self._group_id = group_id
        self._max_links = SpanLimits().max_links  # OTEL_SPAN_LINK_COUNT_LIMIT; None: unlimited

    # ------------------------------------------------------------------ requests

    def start(
        self, topic: str, partition: int, records: Sequence[Any], items: Sequence[AdmittedItem]
    ) -> list[RequestTrace | None]:
        base: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.consumer.group.name": self._group_id,
        }
        traces: list[RequestTrace | None] = []
        for rec, item in zip(records, items, strict=True):
            try:
                traces.append(self._start(base, rec, item.request))
            except Exception:  # noqa: BLE001 - tracing must never stop a record; it goes untraced
                traces.append(None)
        return traces

    def _start(self, base: dict[str, str | int], rec: Any, request: Request | None) -> RequestTrace | None:
        attributes = dict(base)
        attributes["messaging.kafka.offset"] = rec.offset
        if request is not None:
            attributes["stream_service.request.id"] = request.id
            attributes["stream_service.tenant"] = request.tenant
        parent = self._parent(rec.headers)
        span = self._tracer.start_span(self._request_name, parent, SpanKind.CONSUMER, attributes)
        trace_id, span_id, ctx = _hex_ids(span)
        if not ctx.is_valid:  # OTEL_SDK_DISABLED, and no parent to pass on
            return None
        headers = [(TRACEPARENT, f"00-{trace_id}-{span_id}-{ctx.trace_flags:02x}".encode())]
        if ctx.trace_state:
            headers.append((TRACESTATE, ctx.trace_state.to_header().encode()))
        return RequestTrace(span, trace_id, span_id, headers)

    def _parent(self, headers: Iterable[tuple[str, bytes | None]] | None) -> Context:
        """The upstream context of a record's W3C headers (the last of each name wins), or a new root."""
        traceparent = tracestate = None
        for name, value in headers or ():
            if name == TRACEPARENT:
                traceparent = value
            elif name == TRACESTATE:
                tracestate = value
        if not isinstance(traceparent, bytes) or len(traceparent) > MAX_TRACEPARENT_BYTES:
            return _ROOT
        # latin-1 decodes any bytes; what is not trace context then fails the W3C format check.
        carrier = {TRACEPARENT: [traceparent.decode("latin-1")]}
        if isinstance(tracestate, bytes) and len(tracestate) <= MAX_TRACESTATE_BYTES:
            carrier[TRACESTATE] = [tracestate.decode("latin-1")]
        try:
            return self._propagator.extract(carrier, _ROOT)
        except Exception:  # noqa: BLE001 - any value we did not foresee: a new root
            return _ROOT

    def finished(self, records: Sequence[AckedOutput]) -> None:
        for rec in records:
            request = rec.item.trace
            if request is None:
                continue
            span = request.span
            if span.is_recording():
                span.set_attribute(OUTCOME, rec.outcome)
                if rec.error_type is not None:
                    span.set_attribute("error.type", rec.error_type)
                    span.set_status(Status(StatusCode.ERROR))
            span.end()

    # ------------------------------------------------------------------ batches

    def batch(self, items: Sequence[TracedItem], *, per_request: bool) -> BatchTrace:
        return _Batch(self, items, per_request)

    def _batch_span(self, traces: Sequence[RequestTrace | None]) -> trace.Span:
        linked = [t for t in traces if t is not None]
        if self._max_links is not None:
            linked = linked[: self._max_links]
        attributes: dict[str, str | int] = {
            **self._batch_attributes,
            "messaging.batch.message_count": len(traces),
        }
        links = [Link(t.span.get_span_context()) for t in linked]
        return self._tracer.start_span(self._batch_name, _ROOT, SpanKind.INTERNAL, attributes, links)

    def make_global(self) -> None:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # none set yet
            trace.set_tracer_provider(self.provider)

    async def aclose(self) -> None:
        # Flushes the batch span processor: bounded by the exporter's timeout (OTEL_EXPORTER_OTLP_TIMEOUT).
        await asyncio.to_thread(self.provider.shutdown)


class _Batch(BatchTrace):
    """A batch span from entering to leaving the block, and the contexts of its requests."""

    def __init__(self, tracing: OtelTracing, items: Sequence[TracedItem], per_request: bool) -> None:
        traces = [item.trace for item in items]
        self.span = tracing._batch_span(traces)
        trace_id, span_id, _ = _hex_ids(self.span)
        self.ids = {"trace_id": trace_id, "span_id": span_id}
        self.contexts = [_request_context(t) for t in traces] if per_request else None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self.span.end()


def _request_context(request: RequestTrace | None) -> contextvars.Context:
    """A context in which ``request``'s span is the current span, and its ids are in structlog's
    context: the executor runs the request's task in it."""
    ctx = contextvars.copy_context()
    if request is not None:
        ctx.run(_enter, request)
    return ctx


def _enter(request: RequestTrace) -> None:
    # Never detached: the context is the request task's own, and goes with it.
    otel_context.attach(trace.set_span_in_context(request.span))
    structlog.contextvars.bind_contextvars(trace_id=request.trace_id, span_id=request.span_id)
