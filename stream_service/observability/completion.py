"""What the service reports when outputs are acknowledged: per-batch metrics and the audit line.

The engine calls :meth:`CompletionReport.completed` once per published group of outputs, so
every counter is incremented once per label set per batch, not once per record.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from stream_service.observability import audit
from stream_service.observability.metrics import Metrics
from stream_service.observability.tracing import NO_IDS


class _Partition(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


class _Input(Protocol):
    @property
    def tenant(self) -> str: ...

    @property
    def timestamp_ms(self) -> int: ...

    @property
    def state(self) -> _Partition: ...


class _Outcome(Protocol):
    @property
    def seconds(self) -> float: ...


class _Output(Protocol):
    @property
    def error_type(self) -> str | None: ...

    @property
    def outcome(self) -> str: ...


class CompletionReport:
    """Counts answered requests by tenant and outcome, errors by type, published records by
    topic and end-to-end latency (input timestamp to acknowledgement, wall clock); logs one
    ``batch.completed`` line per executed batch (not for inputs answered without running)."""

    def __init__(
        self,
        metrics: Metrics,
        log: FilteringBoundLogger,
        *,
        results_topic: str,
        errors_topic: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._log = log
        self._results_topic = results_topic
        self._errors_topic = errors_topic
        self._wall_clock = wall_clock
        self._batch_ids = itertools.count(1)

    def executed(self, outcomes: Sequence[_Outcome], batch_target: int) -> None:
        """A batch ran: its size, each request's processing time, the sizer's new target."""
        metrics = self._metrics
        metrics.batch_target_size.set(batch_target)
        metrics.batch_size.observe(len(outcomes))
        metrics.processing_seconds.observe_many([o.seconds for o in outcomes])

    def completed(
        self,
        inputs: Sequence[_Input],
        outputs: Sequence[_Output],
        *,
        batch_latency_s: float | None,
        trace: Mapping[str, str] = NO_IDS,
    ) -> None:
        """``outputs[i]`` (acknowledged) answers ``inputs[i]``; ``batch_latency_s`` is None for
        inputs answered without running; ``trace`` holds the batch span's ids (tracing on)."""
        metrics = self._metrics
        now_ms = self._wall_clock() * 1000.0
        # One pass over the batch (this runs for every output): counts by (tenant, outcome) and
        # by error type, latencies, and the partitions for the audit line.
        outcomes: dict[tuple[str, str], int] = {}
        errors: dict[str, int] = {}
        latencies: list[float] = []
        states: set[_Partition] = set()
        for item, rec in zip(inputs, outputs, strict=True):
            error_type = rec.error_type
            if error_type is not None:
                errors[error_type] = errors.get(error_type, 0) + 1
            key = (item.tenant, rec.outcome)
            outcomes[key] = outcomes.get(key, 0) + 1
            latencies.append(max(0.0, now_ms - item.timestamp_ms) / 1000.0)
            states.add(item.state)
        metrics.end_to_end_seconds.observe_many(latencies)
        metrics.count_requests(outcomes)
        failed = sum(errors.values())
        for error_type, n in errors.items():
            metrics.errors_total.labels(error_type=error_type).inc(n)
        metrics.published_total.labels(topic=self._results_topic).inc(len(inputs) - failed)
        if failed:
            metrics.published_total.labels(topic=self._errors_topic).inc(failed)
        if batch_latency_s is not None:
            tenants: Counter[str] = Counter()
            by_outcome: Counter[str] = Counter()
            for (tenant, outcome), n in outcomes.items():
                tenants[tenant] += n
                by_outcome[outcome] += n
            audit.batch_completed(
                self._log,
                batch_id=next(self._batch_ids),
                size=len(inputs),
                partitions={(state.topic, state.partition) for state in states},
                tenants=tenants,
                outcomes=by_outcome,
                latency_s=batch_latency_s,
                **trace,
            )
