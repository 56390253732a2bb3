"""LatencySketch: exact figures while it keeps every value, within its error bound past that."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.tools.latency import LatencySketch, percentile

QUANTILES = (0.0, 0.25, 0.5, 0.95, 0.99, 1.0)
TIMES = st.lists(st.floats(min_value=1e-6, max_value=3600.0), min_size=1, max_size=300)


def sketch_of(values: list[float], **kwargs: object) -> LatencySketch:
    sketch = LatencySketch(**kwargs)  # type: ignore[arg-type]
    for value in values:
        sketch.add(value)
    return sketch


@given(TIMES)
def test_exact_mode_matches_sorted_percentiles(values: list[float]) -> None:
    """Under the exact limit every quantile is numpy's linear interpolation of the sorted values."""
    sketch = sketch_of(values)
    ordered = sorted(values)
    assert sketch.exact
    for q in QUANTILES:
        assert sketch.quantile(q) == percentile(ordered, q)
    assert (sketch.count, sketch.min, sketch.max) == (len(values), ordered[0], ordered[-1])
    assert sketch.total == math.fsum(values)


@given(TIMES)
def test_sketch_mode_stays_within_the_relative_error(values: list[float]) -> None:
    """Past the exact limit each quantile is within relative_error of the exact one."""
    sketch = sketch_of(values, exact_limit=0, relative_error=0.005)
    ordered = sorted(values)
    assert not sketch.exact
    for q in QUANTILES:
        exact = percentile(ordered, q)
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert abs(estimate - exact) <= 0.005 * exact * (1 + 1e-9)
    assert sketch.total == pytest.approx(math.fsum(values), rel=1e-12)


def test_zero_times_and_an_empty_sketch() -> None:
    """Cached answers (0 s) count as zeros; an empty sketch has no quantiles."""
    assert LatencySketch().quantile(0.5) is None
    sketch = sketch_of([0.0, 0.0, 0.0, 2.0], exact_limit=0)
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(1.0) == pytest.approx(2.0, rel=0.005)


def test_memory_is_bounded_past_the_exact_limit() -> None:
    """A million values spread over nine decades take a few thousand buckets, no value array."""
    rng = random.Random(7)
    sketch = LatencySketch(exact_limit=1_000)
    for _ in range(100_000):
        sketch.add(10 ** rng.uniform(-6, 3))
    assert not sketch.exact and sketch._exact is None
    assert len(sketch._buckets) < 2_100  # log(1e9) / log(1.01) ~ 2083


def test_relative_error_must_be_a_fraction() -> None:
    """A bound outside (0, 1) is refused."""
    with pytest.raises(ValueError, match="relative_error"):
        LatencySketch(relative_error=1.5)
