"""Processing-time statistics in bounded memory: :class:`LatencySketch`.

Count, sum, minimum and maximum are exact. Percentiles are exact (linear interpolation between
closest ranks, numpy's default) while at most ``exact_limit`` values were added: they are kept
in an ``array('d')``, 8 bytes each (8 MB at the default million). Past that the array is dropped
and percentiles come from logarithmic buckets (a DDSketch-like histogram): every value lies in
``(gamma**(i-1), gamma**i]`` for one bucket ``i``, which stands for it as ``2 gamma**i / (gamma+1)``,
so each order statistic, and any interpolation between two of them, is within ``relative_error``
(0.5 % by default) of the exact figure. The buckets between 1 ns and 1 day number about 3,200
at most, whatever the count. Values at or below 1 ns (cached answers take 0 s) have a bucket of
their own, standing for 0.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence

__all__ = ["LatencySketch", "percentile"]

DEFAULT_EXACT_LIMIT = 1_000_000
DEFAULT_RELATIVE_ERROR = 0.005
_ZERO_BELOW_S = 1e-9


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of an ascending sequence."""
    rank = q * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


class LatencySketch:
    """Exact count, sum, min and max; percentiles exact up to ``exact_limit`` values, then within
    ``relative_error`` (see the module docstring)."""

    def __init__(
        self, *, exact_limit: int = DEFAULT_EXACT_LIMIT, relative_error: float = DEFAULT_RELATIVE_ERROR
    ) -> None:
        if not 0 < relative_error < 1:
            raise ValueError(f"relative_error must be within (0, 1), got {relative_error}")
        self.exact_limit = exact_limit
        self.relative_error = relative_error
        self.gamma = (1 + relative_error) / (1 - relative_error)
        self._log_gamma = math.log(self.gamma)
        self.count = 0
        self.min: float | None = None
        self.max: float | None = None
        self._sum = 0.0
        self._compensation = 0.0  # Neumaier's running error term: the sum stays exact to an ulp
        self._zeros = 0
        self._buckets: dict[int, int] = {}
        self._exact: array[float] | None = array("d")
        self._sorted = True

    @property
    def exact(self) -> bool:
        """Whether percentiles are exact (every value is still kept)."""
        return self._exact is not None

    def add(self, value: float) -> None:
        self.count += 1
        total = self._sum + value
        if abs(self._sum) >= abs(value):
            self._compensation += (self._sum - total) + value
        else:
            self._compensation += (value - total) + self._sum
        self._sum = total
        self.min = value if self.min is None or value < self.min else self.min
        self.max = value if self.max is None or value > self.max else self.max
        if value <= _ZERO_BELOW_S:
            self._zeros += 1
        else:
            index = math.ceil(math.log(value) / self._log_gamma)
            self._buckets[index] = self._buckets.get(index, 0) + 1
        if self._exact is not None:
            if len(self._exact) < self.exact_limit:
                self._exact.append(value)
                self._sorted = False
            else:
                self._exact = None  # from now on the buckets answer

    @property
    def total(self) -> float:
        """The sum of the values."""
        if self._exact is not None:
            return math.fsum(self._exact)
        return self._sum + self._compensation

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 <= q <= 1), interpolated as :func:`percentile`; None when empty."""
        if not self.count:
            return None
        if self._exact is not None:
            if not self._sorted:
                self._exact = array("d", sorted(self._exact))
                self._sorted = True
            return percentile(self._exact, q)
        rank = q * (self.count - 1)
        low = math.floor(rank)
        low_value, high_value = self._order_statistics(low, min(low + 1, self.count - 1))
        return low_value + (high_value - low_value) * (rank - low)

    def _order_statistics(self, first: int, second: int) -> tuple[float, float]:
        """The estimates of the values of 0-based ranks ``first`` <= ``second``."""
        found: list[float] = []
        seen = 0
        for value, count in self.buckets():
            seen += count
            while len(found) < 2 and (first if not found else second) < seen:
                found.append(value)
            if len(found) == 2:
                break
        return found[0], found[1]

    def bucket_value(self, index: int) -> float:
        """The value bucket ``index`` stands for, clamped to the exact minimum and maximum."""
        estimate = 2 * self.gamma**index / (self.gamma + 1)
        return min(max(estimate, self.min or 0.0), self.max or estimate)

    def buckets(self) -> Iterator[tuple[float, int]]:
        """``(value, count)`` per non-empty bucket, ascending; zeros first."""
        if self._zeros:
            yield 0.0, self._zeros
        for index in sorted(self._buckets):
            yield self.bucket_value(index), self._buckets[index]
