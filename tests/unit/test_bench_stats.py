"""Tests for bench.stats: summaries over repetitions, percentiles, run order, ratios."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.stats import Summary, interleave, paired_ratios, percentile, ratio, summarize


def test_summary_of_odd_and_even_counts() -> None:
    """The median is the middle value, or the mean of the two middle values; min and max bracket it."""
    assert summarize([3.0, 1.0, 2.0]) == Summary(2.0, 1.0, 3.0, 3)
    assert summarize([4.0, 1.0, 3.0, 2.0]) == Summary(2.5, 1.0, 4.0, 4)
    assert summarize([7.0]) == Summary(7.0, 7.0, 7.0, 1)


def test_summary_of_nothing_is_an_error() -> None:
    """An empty series has no summary."""
    with pytest.raises(ValueError, match="no values"):
        summarize([])


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        pytest.param(0, 10.0, id="p0 is the minimum"),
        pytest.param(50, 30.0, id="p50 is the median"),
        pytest.param(100, 50.0, id="p100 is the maximum"),
        pytest.param(25, 20.0, id="p25 on a rank"),
        pytest.param(99, 49.6, id="p99 interpolates between ranks"),
    ],
)
def test_percentile_interpolates_linearly(q: float, expected: float) -> None:
    """Percentiles interpolate between ranks like numpy's default method."""
    assert percentile([50.0, 10.0, 40.0, 20.0, 30.0], q) == pytest.approx(expected)


@pytest.mark.parametrize("q", [-1.0, 100.5])
def test_percentile_rejects_out_of_range(q: float) -> None:
    """A percentile outside [0, 100] is refused."""
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], q)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1), st.floats(min_value=0, max_value=100))
def test_percentile_lies_within_the_values(values: list[float], q: float) -> None:
    """Every percentile lies between the smallest and the largest value."""
    assert min(values) - 1e-6 <= percentile(values, q) <= max(values) + 1e-6


def test_interleave_alternates_variants_within_each_repetition() -> None:
    """Runs go A B A B ... so slow drift of the machine reaches every variant alike."""
    assert interleave(["a", "b"], 3) == [(0, "a"), (0, "b"), (1, "a"), (1, "b"), (2, "a"), (2, "b")]


@pytest.mark.parametrize(("variants", "reps"), [([], 3), (["a"], 0)], ids=["no variants", "no repetitions"])
def test_interleave_rejects_empty_plans(variants: list[str], reps: int) -> None:
    """A plan without variants or repetitions is a mistake, not an empty run."""
    with pytest.raises(ValueError):
        interleave(variants, reps)


def test_ratio_and_paired_ratios() -> None:
    """Ratios are None when a side is missing or zero; paired ratios divide rep i by rep i."""
    assert ratio(8.0, 10.0) == 0.8
    assert ratio(None, 10.0) is None
    assert ratio(1.0, 0.0) is None
    assert paired_ratios([8.0, 9.0], [10.0, 10.0]) == [0.8, 0.9]
