"""Pure arithmetic of the benchmarks: summaries over repetitions, percentiles, run order.

Nothing here touches Kafka or the clock, so all of it is unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple


class Summary(NamedTuple):
    """Median, minimum and maximum of one measurement over its repetitions."""

    median: float
    min: float
    max: float
    n: int


def summarize(values: Iterable[float]) -> Summary:
    """The summary of ``values``; raises ValueError when there are none."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values to summarize")
    return Summary(percentile(ordered, 50.0, presorted=True), ordered[0], ordered[-1], len(ordered))


def percentile(values: Sequence[float], q: float, *, presorted: bool = False) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between ranks (numpy's default).

    Raises ValueError for an empty sequence or ``q`` outside [0, 100].
    """
    if not values:
        raise ValueError("no values for a percentile")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    ordered = values if presorted else sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def interleave(variants: Sequence[str], reps: int) -> list[tuple[int, str]]:
    """The run order ``(rep, variant)``: A B A B ..., so drift in the machine hits every variant alike.

    Raises ValueError when there are no variants or ``reps`` is below 1.
    """
    if not variants:
        raise ValueError("no variants to interleave")
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    return [(rep, variant) for rep in range(reps) for variant in variants]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-repetition ratios of two interleaved variants (rep i of one over rep i of the other)."""
    return [n / d for n, d in zip(numerators, denominators, strict=False) if d]
