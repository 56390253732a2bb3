"""Tests for stream_service.observability.metrics: names, no-op mode, batch histograms, process figures."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import get_args

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_service import __version__
from stream_service.errors import ErrorType
from stream_service.observability.metrics import OTHER_TENANT, BatchHistogram, Metrics


def _value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float | None:
    return registry.get_sample_value(name, labels or {})


def test_all_documented_metric_names_are_exposed() -> None:
    """The exposition contains every metric name the operations guide documents."""
    m = Metrics(CollectorRegistry())
    m.requests_total.labels(tenant="a", outcome="success").inc()
    m.errors_total.labels(error_type="timeout").inc()
    m.published_total.labels(topic="results").inc()
    m.retries_total.labels(error_type="timeout").inc()
    m.pauses_total.labels(reason="in_flight").inc()
    m.set_lag("requests", 0, 3)
    text = generate_latest(m.registry).decode()
    for name in [
        "stream_service_requests_total",
        "stream_service_errors_total",
        "stream_service_consumed_total",
        "stream_service_published_total",
        "stream_service_processing_seconds_bucket",
        "stream_service_end_to_end_seconds_bucket",
        "stream_service_batch_size_bucket",
        "stream_service_batch_target_size",
        "stream_service_in_flight_requests",
        "stream_service_in_flight_bytes",
        "stream_service_paused_partitions",
        "stream_service_consumer_lag",
        "stream_service_assigned_partitions",
        "stream_service_limiter_wait_seconds_total",
        "stream_service_cache_hits_total",
        "stream_service_cache_misses_total",
        "stream_service_commits_total",
        "stream_service_rebalances_total",
        "stream_service_retries_total",
        "stream_service_pauses_total",
        "stream_service_event_loop_lag_seconds",
        "stream_service_publish_failures_total",
        "stream_service_commit_failures_total",
        "stream_service_producer_replacements_total",
        "stream_service_cache_evictions_total",
        "stream_service_cache_entries",
        "stream_service_build_info",
        "stream_service_process_threads",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections_total",
    ]:
        assert f"\n{name}" in text, name


def test_counters_accumulate_per_label_set() -> None:
    """count_requests adds a batch's aggregated counts once per (tenant, outcome)."""
    m = Metrics(CollectorRegistry())
    m.count_requests({("acme", "success"): 5, ("acme", "error"): 2, ("globex", "cached"): 0})
    m.count_requests({("acme", "success"): 1})
    assert _value(m.registry, "stream_service_requests_total", {"tenant": "acme", "outcome": "success"}) == 6
    assert _value(m.registry, "stream_service_requests_total", {"tenant": "acme", "outcome": "error"}) == 2
    assert (
        _value(m.registry, "stream_service_requests_total", {"tenant": "globex", "outcome": "cached"}) is None
    )


def test_tenant_labels_are_capped() -> None:
    """Past max_tenant_labels distinct tenants, new tenants are counted as __other__."""
    m = Metrics(CollectorRegistry(), max_tenant_labels=2)
    assert [m.tenant_label(t) for t in ["a", "b", "c", "a"]] == ["a", "b", OTHER_TENANT, "a"]


def test_observe_many_matches_observe() -> None:
    """observe_many gives the same buckets, count and sum as observing one value at a time."""
    values = [0.0005, 0.001, 0.002, 0.7, 1.0, 75.0]
    registry_one, registry_many = CollectorRegistry(), CollectorRegistry()
    one, many = Metrics(registry_one), Metrics(registry_many)
    for v in values:
        one.processing_seconds.observe(v)
    many.processing_seconds.observe_many(values)
    many.processing_seconds.observe_many(iter([]))

    def histogram_lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if line.startswith("stream_service_processing_seconds")]

    assert histogram_lines(registry_one) == histogram_lines(registry_many)
    assert _value(registry_many, "stream_service_processing_seconds_bucket", {"le": "0.001"}) == 2
    assert _value(registry_many, "stream_service_processing_seconds_bucket", {"le": "1.0"}) == 5
    assert _value(registry_many, "stream_service_processing_seconds_bucket", {"le": "+Inf"}) == 6
    assert _value(registry_many, "stream_service_processing_seconds_count") == 6
    assert _value(registry_many, "stream_service_processing_seconds_sum") == pytest.approx(sum(values))


def test_batch_histogram_buckets_are_inclusive_and_cumulative() -> None:
    """A value equal to a bound falls in that bound's bucket; buckets are cumulative."""
    registry = CollectorRegistry()
    registry.register(BatchHistogram("h", "doc", [1, 2, 4]))
    h = BatchHistogram("h2", "doc", [1, 2, 4])
    registry.register(h)
    h.observe_many([1, 2, 3, 5])
    assert [_value(registry, "h2_bucket", {"le": le}) for le in ["1.0", "2.0", "4.0", "+Inf"]] == [1, 2, 3, 4]


def test_gauges_and_lag_forgetting() -> None:
    """Lag gauges are set per partition and removed when the partition is revoked."""
    m = Metrics(CollectorRegistry())
    m.set_lag("requests", 0, 12)
    m.set_lag("requests", 1, 4)
    m.forget_partitions([("requests", 0), ("requests", 9)])
    assert _value(m.registry, "stream_service_consumer_lag", {"topic": "requests", "partition": "0"}) is None
    assert _value(m.registry, "stream_service_consumer_lag", {"topic": "requests", "partition": "1"}) == 4


def test_process_metrics_are_read_at_scrape_time() -> None:
    """The standard process collector reports a plausible RSS and fd count, psutil the thread count."""
    m = Metrics(CollectorRegistry())
    rss = _value(m.registry, "process_resident_memory_bytes")
    assert rss is not None and rss > 1_000_000
    threads = _value(m.registry, "stream_service_process_threads")
    assert threads is not None and threads >= 1
    fds = _value(m.registry, "process_open_fds")
    assert fds is not None and fds >= 3
    started = _value(m.registry, "process_start_time_seconds")
    assert started is not None and started > 1_500_000_000


def test_known_label_values_exist_before_their_first_event() -> None:
    """Every error type, pause reason and configured output topic is exported at 0 from the start."""
    m = Metrics(CollectorRegistry(), output_topics=("results", "errors"))
    for error_type in get_args(ErrorType):
        assert _value(m.registry, "stream_service_errors_total", {"error_type": error_type}) == 0
    for reason in ("in_flight_full", "in_flight_bytes_full", "backlog"):
        assert _value(m.registry, "stream_service_pauses_total", {"reason": reason}) == 0
    for topic in ("results", "errors"):
        assert _value(m.registry, "stream_service_published_total", {"topic": topic}) == 0
    for name in (
        "stream_service_publish_failures_total",
        "stream_service_commit_failures_total",
        "stream_service_producer_replacements_total",
        "stream_service_cache_evictions_total",
    ):
        assert _value(m.registry, name) == 0, name


def test_build_info_names_the_running_versions() -> None:
    """stream_service_build_info is 1 with the package, Python and aiokafka versions as labels."""
    m = Metrics(CollectorRegistry())
    labels = {
        "version": __version__,
        "python": platform.python_version(),
        "aiokafka": importlib.metadata.version("aiokafka"),
    }
    assert _value(m.registry, "stream_service_build_info", labels) == 1


def test_disabled_metrics_are_noops_and_register_nothing() -> None:
    """With enabled=False every method works and the registry stays empty."""
    registry = CollectorRegistry()
    m = Metrics(registry, enabled=False)
    m.requests_total.labels(tenant="a", outcome="success").inc(3)
    m.in_flight_bytes.set(10)
    m.in_flight_requests.inc()
    m.in_flight_requests.dec()
    m.processing_seconds.observe(0.1)
    m.processing_seconds.observe_many([0.1, 0.2])
    m.count_requests({("a", "success"): 1})
    m.set_lag("t", 0, 1)
    m.forget_partitions([("t", 0)])
    assert generate_latest(registry) == b""


def test_instances_do_not_share_registries() -> None:
    """Two Metrics built without a registry each get their own (no duplicate registration)."""
    first, second = Metrics(), Metrics()
    first.commits_total.inc()
    assert _value(first.registry, "stream_service_commits_total") == 1
    assert _value(second.registry, "stream_service_commits_total") == 0
