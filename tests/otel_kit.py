"""Tracing for tests: an OtelTracing whose spans land in memory, sampled always.

Kept apart from ``tests/engine_kit.py``, which must import nothing of OpenTelemetry (a test
runs an engine with tracing off and checks that nothing of it was imported).
"""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from stream_service.observability.otel import OtelTracing
from stream_service.settings import Config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01".encode()


class Spans:
    """The spans one tracing exported, by kind of span."""

    def __init__(self, exporter: InMemorySpanExporter, cfg: Config) -> None:
        self._exporter = exporter
        self._request_name = f"process {cfg.topics.input}"
        self._batch_name = f"execute {cfg.topics.input}"

    @property
    def all(self) -> tuple[ReadableSpan, ...]:
        return self._exporter.get_finished_spans()

    @property
    def requests(self) -> list[ReadableSpan]:
        return [s for s in self.all if s.name == self._request_name]

    @property
    def batches(self) -> list[ReadableSpan]:
        return [s for s in self.all if s.name == self._batch_name]

    def request(self, offset: int, partition: int = 0) -> ReadableSpan:
        """The request span of the input at ``partition``/``offset`` (exactly one)."""
        (found,) = [
            s
            for s in self.requests
            if s.attributes is not None
            and s.attributes["messaging.kafka.offset"] == offset
            and s.attributes["messaging.destination.partition.id"] == str(partition)
        ]
        return found


def in_memory_tracing(cfg: Config) -> tuple[OtelTracing, Spans]:
    """An OtelTracing for ``cfg``'s topics whose every span is sampled and kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = OtelTracing(provider, input_topic=cfg.topics.input, group_id=cfg.topics.group_id)
    return tracing, Spans(exporter, cfg)


def hex_id(value: int, digits: int) -> str:
    return f"{value:0{digits}x}"
