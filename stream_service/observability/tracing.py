"""Tracing across Kafka: the interface the engine calls, and the no-op used when tracing is off.

With ``tracing.enabled`` (and the ``stream-service[otel]`` extra), :func:`build_tracing` returns
:class:`~stream_service.observability.otel.OtelTracing`; otherwise :data:`NO_TRACING`, whose
methods do nothing, so nothing of OpenTelemetry is imported or paid for. The choice is made
once, at wiring; the engine calls :meth:`Tracing.batch` and :meth:`Tracing.finished` once per
batch, and :class:`~stream_service.pipeline.admit.Admission` calls :meth:`Tracing.start` per
fetch only when tracing is on.

What a traced record gets (see docs/operations.md, *Tracing*):

- a request span (``process <topic>``, kind CONSUMER), child of the input's W3C ``traceparent``
  (or a new root), from admission until its output is acknowledged;
- the request span's ``traceparent`` (and ``tracestate``) on its output record;
- the request span as the current OpenTelemetry context (and ``trace_id``/``span_id`` in the
  structlog context) while an async processor runs it, so the http processor's request carries it;
- ``trace_id``/``span_id`` on its ``request.failed`` and ``request.completed`` lines.

Each executed batch gets a span (``execute <topic>``) linked to its requests' spans, whose ids
``batch.completed`` carries.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from stream_service.errors import ConfigError
from stream_service.settings import TracingSettings

if TYPE_CHECKING:
    from stream_service.messages import Request

__all__ = [
    "NO_BATCH",
    "NO_TRACING",
    "AckedOutput",
    "AdmittedItem",
    "BatchTrace",
    "RequestTrace",
    "TracedItem",
    "Tracing",
    "build_tracing",
]

Headers = list[tuple[str, bytes]]
NO_IDS: Mapping[str, str] = {}


class RequestTrace:
    """One request's span, and what its output and audit lines carry of it."""

    __slots__ = ("span", "trace_id", "span_id", "headers")

    def __init__(self, span: Any, trace_id: str, span_id: str, headers: Headers) -> None:
        self.span = span  # an opentelemetry Span, ended by Tracing.finished
        self.trace_id = trace_id  # 32 lower-case hex digits
        self.span_id = span_id  # 16 lower-case hex digits
        self.headers = headers  # traceparent (and tracestate) for the output record

    @property
    def ids(self) -> dict[str, str]:
        """``trace_id`` and ``span_id``, as audit lines carry them."""
        return {"trace_id": self.trace_id, "span_id": self.span_id}


class AdmittedItem(Protocol):
    """A work item just made from a record, as far as its request span reads it."""

    @property
    def request(self) -> Request | None: ...


class TracedItem(Protocol):
    """A work item, as far as tracing reads it."""

    @property
    def trace(self) -> RequestTrace | None: ...


class AckedOutput(Protocol):
    """An acknowledged output record, as far as tracing reads it."""

    @property
    def item(self) -> TracedItem: ...

    @property
    def error_type(self) -> str | None: ...

    @property
    def outcome(self) -> str: ...


class BatchTrace:
    """One executed batch: a context manager around its run. This base class does nothing.

    ``contexts`` (one per request, or None) are the contexts the executor runs an async
    processor's requests in; ``ids`` go on the ``batch.completed`` line."""

    contexts: Sequence[contextvars.Context] | None = None
    ids: Mapping[str, str] = NO_IDS

    def __enter__(self) -> BatchTrace:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


NO_BATCH = BatchTrace()


class Tracing:
    """No tracing: every method does nothing and returns at once (the engine never branches)."""

    enabled = False

    def start(
        self, topic: str, partition: int, records: Sequence[Any], items: Sequence[AdmittedItem]
    ) -> list[RequestTrace | None]:
        """A request span for each of a fetch's ``records`` (aiokafka ConsumerRecords) of one
        partition, whose work ``items`` were just made from them; never raises."""
        return [None] * len(records)

    def batch(self, items: Sequence[TracedItem], *, per_request: bool) -> BatchTrace:
        """The span of a batch about to run; with ``per_request``, a context for each request."""
        return NO_BATCH

    def finished(self, records: Sequence[AckedOutput]) -> None:
        """These outputs are acknowledged: end their inputs' request spans."""

    def make_global(self) -> None:
        """Make this the process's tracer provider (for processors' own spans), unless one is set."""

    async def aclose(self) -> None:
        """Export what is left (bounded by the exporter's own timeout) and stop."""


NO_TRACING = Tracing()


def build_tracing(settings: TracingSettings, *, input_topic: str, group_id: str) -> Tracing:
    """:data:`NO_TRACING` when tracing is off; else the OpenTelemetry tracing, exporting as
    ``settings.exporter`` and the ``OTEL_*`` variables say. Raises ``ConfigError`` when it is
    on but the ``stream-service[otel]`` extra is not installed."""
    if not settings.enabled:
        return NO_TRACING
    try:
        from stream_service.observability.otel import OtelTracing, provider_for

        provider = provider_for(settings)  # imports the exporter
    except ImportError as exc:
        detail = f"cannot import {exc.name}" if exc.name else str(exc).splitlines()[0]
        raise ConfigError(
            f"tracing.enabled = true needs the stream-service[otel] extra ({detail}): "
            "pip install 'stream-service[otel]', or set tracing.enabled = false"
        ) from None
    return OtelTracing(provider, input_topic=input_topic, group_id=group_id)
