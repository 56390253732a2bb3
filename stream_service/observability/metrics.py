"""Prometheus metrics of one service instance, cheap enough for the hot path.

Each :class:`Metrics` owns its registry (never the process-global ``REGISTRY``), so several
instances and tests never collide. When metrics are disabled every attribute is a no-op
object with the same methods, so callers never branch on ``enabled``.

Hot path: the engine aggregates per batch and calls ``inc(n)`` once per label set, and feeds
a batch's latencies to a histogram with one ``observe_many`` call (a bisect per value and a
single lock, instead of prometheus_client's lock per observation).
"""

from __future__ import annotations

import importlib.metadata
import platform
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, get_args

import psutil  # type: ignore[import-untyped]  # no stubs in the lock file
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from stream_service import __version__
from stream_service.errors import ErrorType

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS_S",
    "CounterLike",
    "GaugeLike",
    "HistogramLike",
    "Metrics",
    "OTHER_TENANT",
    "PAUSE_REASONS",
]

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**n) for n in range(13))  # 1 .. 4096
# Tenants come from upstream messages: without a cap, one bad producer could create unbounded
# label sets. Tenants beyond the cap are counted under OTHER_TENANT.
DEFAULT_MAX_TENANT_LABELS = 200
OTHER_TENANT = "__other__"
TRANSACTION_OUTCOMES = ("committed", "aborted")
# Label values created at startup, so rate() over them is 0 rather than "no data" before the
# first event. Tenants (requests_total) come from the data and cannot be known in advance.
PAUSE_REASONS: tuple[str, ...] = ("in_flight_full", "in_flight_bytes_full", "backlog")
ERROR_TYPES: tuple[str, ...] = get_args(ErrorType)


class CounterLike(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def labels(self, *labelvalues: str, **labelkwargs: str) -> CounterLike: ...


class GaugeLike(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...
    def set(self, value: float) -> None: ...
    def set_function(self, f: Callable[[], float]) -> None: ...
    def labels(self, *labelvalues: str, **labelkwargs: str) -> GaugeLike: ...
    def remove(self, *labelvalues: str) -> None: ...


class HistogramLike(Protocol):
    def observe(self, amount: float) -> None: ...
    def observe_many(self, values: Iterable[float]) -> None: ...


class _Noop:
    """Stands in for every metric when metrics are disabled; every method does nothing."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def set_function(self, f: Callable[[], float]) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def observe_many(self, values: Iterable[float]) -> None:
        pass

    def labels(self, *labelvalues: str, **labelkwargs: str) -> _Noop:
        return self

    def remove(self, *labelvalues: str) -> None:
        pass


_NOOP = _Noop()


class BatchHistogram:
    """A label-less histogram collector optimised for observing a whole batch at once.

    Exposes the standard ``_bucket``/``_sum``/``_count`` series; buckets are cumulative and
    ``le`` is inclusive, as Prometheus expects.
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(set(buckets))
        self._counts = [0] * (len(self._bounds) + 1)  # the last slot is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # scrapes may come from another thread

    def observe(self, amount: float) -> None:
        index = bisect_left(self._bounds, amount)
        with self._lock:
            self._counts[index] += 1
            self._sum += amount

    def observe_many(self, values: Iterable[float]) -> None:
        """Observe every value of a batch: bisects outside the lock, one lock for the batch."""
        seq = values if isinstance(values, list | tuple) else list(values)
        bounds = self._bounds
        indices = [bisect_left(bounds, value) for value in seq]
        total = sum(seq)
        with self._lock:
            counts = self._counts
            for index in indices:
                counts[index] += 1
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip([*self._bounds, float("inf")], counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), cumulative))
        yield HistogramMetricFamily(self._name, self._documentation, buckets=buckets, sum_value=total)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``0.005``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class ThreadCountCollector:
    """``stream_service_process_threads``: the OS threads of this process, read at scrape time.

    This is the one process figure the standard collectors lack (prometheus_client's
    ``ProcessCollector`` reads CPU, memory, fds and start time from ``/proc/self/stat``, which
    has no thread count); psutil is kept for it alone. Threads matter here: the thread executor,
    ``asyncio.to_thread`` and native libraries all start them.
    """

    NAME = "stream_service_process_threads"
    HELP = "OS threads in this process (psutil; the standard process collector has no thread count)."

    def __init__(self) -> None:
        self._process = psutil.Process()

    def collect(self) -> Iterator[Metric]:
        try:
            threads = self._process.num_threads()
        except psutil.Error:  # the scrape must not fail because one reading did
            return
        yield GaugeMetricFamily(self.NAME, self.HELP, value=threads)

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP)


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """Every metric the service exports, registered in ``registry``.

    Guarantees: with ``enabled=False`` nothing is registered and every attribute is a no-op;
    tenant label values are capped at ``max_tenant_labels`` distinct tenants (the rest are
    reported as ``__other__``) so upstream data cannot explode the series count. Every label
    value that can be known in advance exists from the start at 0: ``errors_total`` for each
    error type, ``pauses_total`` for each reason, and ``published_total`` for each of
    ``output_topics``. The registry also holds the standard ``process_*`` and ``python_*``
    collectors and ``stream_service_build_info``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        enabled: bool = True,
        max_tenant_labels: int = DEFAULT_MAX_TENANT_LABELS,
        output_topics: Iterable[str] = (),
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.enabled = enabled
        self._max_tenant_labels = max_tenant_labels
        self._tenants: set[str] = set()
        r = self.registry if enabled else None

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterLike:
            return Counter(name, doc, labels, registry=r) if r is not None else _NOOP

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeLike:
            return Gauge(name, doc, labels, registry=r) if r is not None else _NOOP

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> HistogramLike:
            if r is None:
                return _NOOP
            h = BatchHistogram(name, doc, buckets)
            r.register(h)
            return h

        ns = "stream_service"
        self.requests_total = counter(
            f"{ns}_requests_total",
            "Requests answered, by tenant and outcome (success, error, cached).",
            ("tenant", "outcome"),
        )
        self.errors_total = counter(f"{ns}_errors_total", "Failed requests by error type.", ("error_type",))
        self.consumed_total = counter(f"{ns}_consumed_total", "Records read from the input topic.")
        self.published_total = counter(f"{ns}_published_total", "Records acknowledged by Kafka.", ("topic",))
        self.processing_seconds = histogram(
            f"{ns}_processing_seconds", "Time the processor spent on one request.", LATENCY_BUCKETS_S
        )
        self.end_to_end_seconds = histogram(
            f"{ns}_end_to_end_seconds",
            "From the input record's timestamp to its output's acknowledgement.",
            LATENCY_BUCKETS_S,
        )
        self.batch_size = histogram(f"{ns}_batch_size", "Requests per executed batch.", BATCH_SIZE_BUCKETS)
        self.batch_target_size = gauge(f"{ns}_batch_target_size", "Current adaptive batch size target.")
        self.in_flight_requests = gauge(f"{ns}_in_flight_requests", "Requests read but not yet committed.")
        self.in_flight_bytes = gauge(f"{ns}_in_flight_bytes", "Bytes of requests read but not yet committed.")
        self.paused_partitions = gauge(f"{ns}_paused_partitions", "Partitions paused by back-pressure.")
        self.consumer_lag = gauge(
            f"{ns}_consumer_lag",
            "Records between the high watermark and our position.",
            ("topic", "partition"),
        )
        self.assigned_partitions = gauge(f"{ns}_assigned_partitions", "Partitions assigned to this member.")
        self.limiter_wait_seconds_total = counter(
            f"{ns}_limiter_wait_seconds_total", "Seconds requests waited for rate-limiter tokens."
        )
        self.cache_hits_total = counter(f"{ns}_cache_hits_total", "Result cache hits.")
        self.cache_misses_total = counter(f"{ns}_cache_misses_total", "Result cache misses.")
        self.commits_total = counter(f"{ns}_commits_total", "Successful offset commits.")
        self.rebalances_total = counter(f"{ns}_rebalances_total", "Partition assignments received.")
        self.retries_total = counter(
            f"{ns}_retries_total", "Retried attempts by error type.", ("error_type",)
        )
        self.pauses_total = counter(
            f"{ns}_pauses_total", "Times fetching was paused, by reason.", ("reason",)
        )
        self.event_loop_lag_seconds = gauge(
            f"{ns}_event_loop_lag_seconds", "How late the last heartbeat woke up (event loop responsiveness)."
        )
        self.publish_failures_total = counter(
            f"{ns}_publish_failures_total", "Output records whose send failed and was retried."
        )
        self.commit_failures_total = counter(
            f"{ns}_commit_failures_total", "Offset commits the broker refused."
        )
        self.producer_replacements_total = counter(
            f"{ns}_producer_replacements_total", "Broken producers replaced by a fresh one (new producer id)."
        )
        self.cache_evictions_total = counter(
            f"{ns}_cache_evictions_total", "Result-cache entries evicted to stay within cache.max_entries."
        )
        self.cache_entries = gauge(f"{ns}_cache_entries", "Entries held by the result cache.")
        self.tenant_states = gauge(
            f"{ns}_tenant_states",
            "Per-tenant entries held, by kind (scheduler: queues of tenants with work or refilling "
            "buckets; tenant_headers: built tenant headers, at most 1,024).",
            ("kind",),
        )
        self.transactions_total = counter(
            f"{ns}_transactions_total",
            "Exactly once: partition transactions by outcome (committed, aborted).",
            ("outcome",),
        )
        self.transaction_commit_seconds = histogram(
            f"{ns}_transaction_commit_seconds",
            "Exactly once: one partition's commit, from waiting for its sends' acknowledgements to "
            "EndTxn's answer (the open transaction's outputs wait for it to become visible).",
            LATENCY_BUCKETS_S,
        )
        self.build_info = gauge(
            f"{ns}_build_info", "Always 1; the labels say what is running.", ("version", "python", "aiokafka")
        )
        self.build_info.labels(
            version=__version__,
            python=platform.python_version(),
            aiokafka=_distribution_version("aiokafka"),
        ).set(1)
        for error_type in ERROR_TYPES:
            self.errors_total.labels(error_type=error_type)
        for reason in PAUSE_REASONS:
            self.pauses_total.labels(reason=reason)
        for topic in output_topics:
            self.published_total.labels(topic=topic)
        for outcome in TRANSACTION_OUTCOMES:
            self.transactions_total.labels(outcome=outcome)
        if r is not None:
            ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
            PlatformCollector(registry=r)  # python_info
            GCCollector(registry=r)  # python_gc_objects_collected_total, python_gc_collections_total
            r.register(ThreadCountCollector())

    def tenant_label(self, tenant: str) -> str:
        """The label value to use for ``tenant``: itself, or ``__other__`` past the cap."""
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) < self._max_tenant_labels:
            self._tenants.add(tenant)
            return tenant
        return OTHER_TENANT

    def count_requests(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add a batch's (tenant, outcome) -> count to ``requests_total`` (one inc per label set)."""
        for (tenant, outcome), n in counts.items():
            if n:
                self.requests_total.labels(tenant=self.tenant_label(tenant), outcome=outcome).inc(n)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def partitions_changed(
        self, assigned_now: int, *, assigned: bool = False, revoked: Iterable[Any] = ()
    ) -> None:
        """A rebalance: count an assignment received, set the gauge, drop revoked lag series."""
        if assigned:
            self.rebalances_total.inc()
        self.assigned_partitions.set(assigned_now)
        self.forget_partitions((tp.topic, tp.partition) for tp in revoked)

    def forget_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop the lag series of revoked partitions so they do not report a stale value."""
        for topic, partition in partitions:
            try:
                self.consumer_lag.remove(topic, str(partition))
            except KeyError:  # never set for this partition
                pass
