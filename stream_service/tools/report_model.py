"""The figures of ``stream-service report``: the :class:`Report` and its parts, the thresholds that
make a figure worth a recommendation, and :func:`recommend`. Pure data, no I/O."""

from __future__ import annotations

import msgspec

__all__ = [
    "DEFAULT_THRESHOLDS",
    "CacheStats",
    "ErrorAnalysis",
    "MessageCount",
    "Overview",
    "Performance",
    "ProfileStats",
    "Report",
    "Thresholds",
    "recommend",
]

_ADVICE: dict[str, str] = {
    "validation": "fix the producers: their records fail validation (ErrorRecord.error names the field)",
    "profile": "add the missing profiles, or fix profile_name in the producers",
    "rate_limit": "raise limiter.tenant_rate / limiter.global_rate, or slow the producers down",
    "timeout": "raise executor.request_timeout_s, or make the processor faster",
    "memory": "give the workers more memory, or lower executor.concurrency",
    "connection": "check that the model endpoint (processor.http.base_url) is reachable and healthy",
    "crash": "a worker process keeps dying: read its logs (segfaults, OOM kills)",
    "too_large": "raise kafka.producer_max_request_size (and the topic's max.message.bytes), "
    "or shorten the outputs",
    "unknown": "the processor raises unclassified exceptions: see the most common messages above",
}


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    """When a figure deserves a recommendation."""

    min_success_rate: float = 0.95
    max_tail_ratio: float = 3.0  # p95 over mean processing time
    min_tail_samples: int = 20  # fewer results make p95 too noisy to judge
    min_throughput_per_s: float = 10.0
    dominant_error_share: float = 0.5
    max_backpressure_share: float = 0.1  # of the wall time
    max_backpressure_s: float = 60.0  # when the wall time is unknown


DEFAULT_THRESHOLDS = Thresholds()


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    successful: int
    failed: int
    success_rate: float | None


class Performance(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Processing time of successful results, in seconds; throughput in successes per second.

    ``percentiles_exact`` is false (and then shown) past a million results, where the percentiles
    come from a sketch within 0.5 % (see :mod:`stream_service.tools.latency`).
    """

    count: int
    total_s: float
    mean_s: float | None
    median_s: float | None
    p95_s: float | None
    p99_s: float | None
    min_s: float | None
    max_s: float | None
    wall_seconds: float | None
    throughput_per_s: float | None
    percentiles_exact: bool = True


class ProfileStats(msgspec.Struct, frozen=True, kw_only=True):
    """HRV of one profile's results: the mean of each dimension and of all eight."""

    profile: str
    count: int
    with_hrv: int
    mean_overall: float | None
    dimensions: dict[str, float]


class MessageCount(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    count: int


class ErrorAnalysis(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Errors by type, and the most common messages; ``messages_exact`` is false (and then shown)
    when there were too many distinct messages to count each: the counts are then lower bounds."""

    by_type: dict[str, int]
    top_messages: list[MessageCount]
    messages_exact: bool = True


class CacheStats(msgspec.Struct, frozen=True, kw_only=True):
    hits: int
    hit_rate: float | None  # cached results over successful results


class Report(msgspec.Struct, frozen=True, kw_only=True):
    overview: Overview
    performance: Performance
    hrv: list[ProfileStats]
    errors: ErrorAnalysis
    cache: CacheStats
    backpressure_seconds: float | None = None
    skipped_records: int = 0  # records that could not be decoded (not in the figures)
    recommendations: list[str] = []


def recommend(report: Report, thresholds: Thresholds) -> list[str]:
    """Advice derived from the figures; empty when nothing stands out."""
    t = thresholds
    out: list[str] = []
    rate = report.overview.success_rate
    if rate is not None and rate < t.min_success_rate:
        out.append(
            f"Success rate is {rate:.1%}, below {t.min_success_rate:.0%}: "
            "see the error analysis for the causes."
        )
    perf = report.performance
    if (
        perf.count >= t.min_tail_samples
        and perf.mean_s
        and perf.p95_s is not None
        and perf.p95_s > t.max_tail_ratio * perf.mean_s
    ):
        out.append(
            f"p95 processing time ({perf.p95_s:.3f} s) is {perf.p95_s / perf.mean_s:.1f}x the mean "
            f"({perf.mean_s:.3f} s): a slow tail. Look for oversized prompts, retries or a struggling "
            "dependency; a lower batch.target_batch_ms keeps batches from waiting on slow requests."
        )
    if perf.throughput_per_s is not None and perf.throughput_per_s < t.min_throughput_per_s:
        out.append(
            f"Throughput is {perf.throughput_per_s:.1f} results/s, below {t.min_throughput_per_s:g}/s: "
            "if the input topic has lag, add replicas (up to its partition count) "
            "or raise executor.concurrency."
        )
    failed = report.overview.failed
    if failed:
        error_type, count = next(iter(report.errors.by_type.items()))
        if count / failed > t.dominant_error_share:
            advice = _ADVICE.get(error_type, "see the most common messages above")
            out.append(f"{error_type} errors are {count / failed:.0%} of all failures: {advice}.")
    pressure = report.backpressure_seconds
    if pressure is not None and pressure > 0:
        wall = perf.wall_seconds
        sustained = pressure > t.max_backpressure_share * wall if wall else pressure > t.max_backpressure_s
        if sustained:
            share = f" ({pressure / wall:.0%} of the time)" if wall else ""
            out.append(
                f"Sustained back-pressure: {pressure:.0f} s paused{share}. Add replicas (up to the "
                "input partition count), raise executor.concurrency or executor.max_in_flight, "
                "or raise the limiter rates."
            )
    return out
