"""The report's figures, computed one output at a time: :class:`ReportBuilder` and :func:`analyse`.

Nothing of a record is kept once it is counted (content never is): processing times go into a
:class:`~stream_service.tools.latency.LatencySketch`, HRV into sums per profile, errors into
counters per type and a bounded count of messages (:class:`TopCounts`). Memory depends on the
number of profiles, error types and (at most ``TopCounts.capacity``) messages, not on the number
of outputs, except for the exact percentiles, 8 bytes per result up to a million.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

import msgspec

from stream_service.messages import ErrorRecord, Result
from stream_service.processors.hrv import DIMENSION_NAMES
from stream_service.tools.latency import LatencySketch
from stream_service.tools.report_model import (
    DEFAULT_THRESHOLDS,
    CacheStats,
    ErrorAnalysis,
    MessageCount,
    Overview,
    Performance,
    ProfileStats,
    Report,
    Thresholds,
    recommend,
)

__all__ = ["ReportBuilder", "TopCounts", "analyse"]

TOP_MESSAGES = 5
MESSAGE_CHARS = 200
MESSAGE_CAPACITY = 1_000


class TopCounts:
    """The most frequent keys of a stream in bounded memory (the Misra-Gries summary).

    Exact while there are at most ``capacity`` distinct keys. Past that, a new key that finds
    the summary full takes one off every count (dropping those at zero) instead of being added;
    each reported count is then low by at most :attr:`undercount`, and any key seen more than
    ``n / (capacity + 1)`` times in ``n`` is still in the summary.
    """

    def __init__(self, capacity: int = MESSAGE_CAPACITY) -> None:
        self.capacity = capacity
        self.undercount = 0
        self._counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        counts = self._counts
        if key in counts:
            counts[key] += 1
        elif len(counts) < self.capacity:
            counts[key] = 1
        else:
            self.undercount += 1
            for other in list(counts):
                if counts[other] == 1:
                    del counts[other]
                else:
                    counts[other] -= 1

    def most_common(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` largest counts, ties in the order the keys were first counted."""
        return sorted(self._counts.items(), key=lambda item: -item[1])[:n]


class ReportBuilder:
    """Feed it outputs with :meth:`add`, one at a time; :meth:`report` gives the figures so far."""

    def __init__(self, *, exact_limit: int | None = None, message_capacity: int = MESSAGE_CAPACITY) -> None:
        self.latency = LatencySketch() if exact_limit is None else LatencySketch(exact_limit=exact_limit)
        self.cached = 0
        self.hrv_sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(DIMENSION_NAMES))
        self.hrv_counts: Counter[str] = Counter()
        self.profile_counts: Counter[str] = Counter()
        self.error_types: Counter[str] = Counter()
        self.messages = TopCounts(message_capacity)

    def add(self, record: Result | ErrorRecord) -> None:
        if isinstance(record, Result):
            self.latency.add(record.processing_time)
            self.cached += record.cached
            self.profile_counts[record.profile_name] += 1
            if record.hrv_vector is not None:
                sums = self.hrv_sums[record.profile_name]
                for i, value in enumerate(record.hrv_vector):
                    sums[i] += value
                self.hrv_counts[record.profile_name] += 1
        else:
            self.error_types[record.error_type] += 1
            self.messages.add(record.error[:MESSAGE_CHARS])

    def report(
        self,
        *,
        backpressure_seconds: float | None = None,
        wall_seconds: float | None = None,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
    ) -> Report:
        """The figures; ``wall_seconds`` (if known and > 0) gives the throughput."""
        successful, failed = self.latency.count, sum(self.error_types.values())
        total = successful + failed
        overview = Overview(
            total=total,
            successful=successful,
            failed=failed,
            success_rate=successful / total if total else None,
        )
        hrv = [
            _profile_stats(profile, count, self.hrv_counts[profile], self.hrv_sums.get(profile))
            for profile, count in sorted(self.profile_counts.items())
        ]
        errors = ErrorAnalysis(
            by_type=dict(sorted(self.error_types.items(), key=lambda item: (-item[1], item[0]))),
            top_messages=[
                MessageCount(message=m, count=n) for m, n in self.messages.most_common(TOP_MESSAGES)
            ],
            messages_exact=self.messages.undercount == 0,
        )
        cache = CacheStats(hits=self.cached, hit_rate=self.cached / successful if successful else None)
        report = Report(
            overview=overview,
            performance=_performance(self.latency, wall_seconds),
            hrv=hrv,
            errors=errors,
            cache=cache,
            backpressure_seconds=backpressure_seconds,
        )
        return msgspec.structs.replace(report, recommendations=recommend(report, thresholds))


def analyse(
    records: Iterable[Result | ErrorRecord],
    *,
    backpressure_seconds: float | None = None,
    wall_seconds: float | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Report:
    """Summarise results and errors; ``wall_seconds`` (if known and > 0) gives the throughput."""
    builder = ReportBuilder()
    for record in records:
        builder.add(record)
    return builder.report(
        backpressure_seconds=backpressure_seconds, wall_seconds=wall_seconds, thresholds=thresholds
    )


def _performance(latency: LatencySketch, wall_seconds: float | None) -> Performance:
    wall = wall_seconds if wall_seconds is not None and wall_seconds > 0 else None
    count = latency.count
    if not count:
        return Performance(
            count=0, total_s=0.0, mean_s=None, median_s=None, p95_s=None, p99_s=None,
            min_s=None, max_s=None, wall_seconds=wall, throughput_per_s=None,
        )  # fmt: skip
    total = latency.total
    return Performance(
        count=count,
        total_s=total,
        mean_s=total / count,
        median_s=latency.quantile(0.5),
        p95_s=latency.quantile(0.95),
        p99_s=latency.quantile(0.99),
        min_s=latency.min,
        max_s=latency.max,
        wall_seconds=wall,
        throughput_per_s=count / wall if wall is not None else None,
        percentiles_exact=latency.exact,
    )


def _profile_stats(profile: str, count: int, with_hrv: int, sums: list[float] | None) -> ProfileStats:
    if not with_hrv or sums is None:
        return ProfileStats(profile=profile, count=count, with_hrv=0, mean_overall=None, dimensions={})
    means = [s / with_hrv for s in sums]
    return ProfileStats(
        profile=profile,
        count=count,
        with_hrv=with_hrv,
        mean_overall=math.fsum(means) / len(means),
        dimensions=dict(zip(DIMENSION_NAMES, means, strict=True)),
    )
