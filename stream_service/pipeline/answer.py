"""Answer: the output record (a Result or an ErrorRecord) that answers one input, and its audit line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from structlog.typing import FilteringBoundLogger

from stream_service.messages import ErrorRecord, Result
from stream_service.observability import audit
from stream_service.observability.metrics import Metrics
from stream_service.observability.tracing import NO_IDS
from stream_service.pipeline.decode import DecodeFailure
from stream_service.pipeline.encode import OutputEncoder, OutRecord
from stream_service.pipeline.execute import Outcome
from stream_service.pipeline.work import WorkItem
from stream_service.processors.base import Output


class Answers:
    """Builds the one output record each input gets, and logs it.

    Guarantees: a Result echoes the request's metadata (merged with the processor's extra
    metadata); an ErrorRecord carries the request's id, tenant and metadata; every failure gets
    one ``request.failed`` audit line; prompts and content are never logged in clear. With
    tracing on, audit lines carry the request span's ``trace_id`` and ``span_id``.
    """

    def __init__(
        self, encoder: OutputEncoder, metrics: Metrics, log: FilteringBoundLogger, *, audit_requests: bool
    ) -> None:
        self.encoder = encoder
        self.metrics = metrics
        self.log = log
        self.audit_requests = audit_requests

    def result(
        self, item: WorkItem, output: Output, *, attempts: int, seconds: float, cached: bool
    ) -> OutRecord:
        request = item.request
        assert request is not None
        metadata = request.metadata if not output.metadata else {**request.metadata, **output.metadata}
        result = Result(
            id=request.id,
            content=output.content,
            hrv_vector=output.hrv_vector,
            processing_time=seconds,
            tenant=request.tenant,
            profile_name=request.profile_name,
            metadata=metadata,
            cached=cached,
            attempts=attempts,
        )
        if self.audit_requests:
            audit.request_completed(
                self.log,
                request_id=request.id,
                tenant=request.tenant,
                profile_name=request.profile_name,
                prompt=request.prompt,
                topic=item.state.topic,
                partition=item.state.partition,
                offset=item.offset,
                latency_s=seconds,
                attempts=attempts,
                cached=cached,
                **_trace_ids(item),
            )
        return self.encoder.result(item, result)

    def error(
        self, item: WorkItem, error_type: Any, message: str, attempts: int, seconds: float
    ) -> OutRecord:
        request = item.request
        assert request is not None
        audit.request_failed(
            self.log,
            request_id=request.id,
            tenant=request.tenant,
            error_type=error_type,
            error=message,
            attempts=attempts,
            topic=item.state.topic,
            partition=item.state.partition,
            offset=item.offset,
            **_trace_ids(item),
        )
        record = ErrorRecord(
            id=request.id,
            error=message,
            error_type=error_type,
            attempts=attempts,
            processing_time=seconds,
            tenant=request.tenant,
            profile_name=request.profile_name,
            metadata=request.metadata,
        )
        return self.encoder.error(item, record)

    def failure(self, item: WorkItem, failure: DecodeFailure) -> OutRecord:
        audit.request_failed(
            self.log,
            request_id=failure.request_id,
            tenant=failure.tenant,
            error_type=failure.error_type,
            error=failure.message,
            attempts=0,
            topic=item.state.topic,
            partition=item.state.partition,
            offset=item.offset,
            **_trace_ids(item),
        )
        return self.encoder.error(item, failure.to_error_record())

    def outcome(self, item: WorkItem, outcome: Outcome) -> OutRecord:
        if outcome.attempts > 1:
            kind = outcome.error.error_type if outcome.error is not None else "recovered"
            self.metrics.retries_total.labels(error_type=kind).inc(outcome.attempts - 1)
        if outcome.output is not None:
            return self.result(
                item, outcome.output, attempts=outcome.attempts, seconds=outcome.seconds, cached=False
            )
        assert outcome.error is not None
        return self.error(
            item, outcome.error.error_type, str(outcome.error), outcome.attempts, outcome.seconds
        )

    def follower(self, item: WorkItem, outcome: Outcome) -> OutRecord:
        if outcome.output is not None:
            return self.result(item, outcome.output, attempts=0, seconds=0.0, cached=True)
        assert outcome.error is not None
        return self.error(item, outcome.error.error_type, str(outcome.error), 0, 0.0)


def _trace_ids(item: WorkItem) -> Mapping[str, str]:
    """The request span's ids for an audit line; none with tracing off."""
    return NO_IDS if item.trace is None else item.trace.ids
