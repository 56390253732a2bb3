"""Tests for stream_service.pipeline.limit: token buckets stepped by a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.pipeline.limit import RateLimit, TokenBucket
from tests.fakes import FakeClock


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        pytest.param(0.0, 1, id="zero rate"),
        pytest.param(-1.0, 1, id="negative rate"),
        pytest.param(1.0, 0, id="zero burst"),
    ],
)
def test_invalid_rate_limit_is_rejected(rate: float, burst: int) -> None:
    """A RateLimit without a positive rate and a burst of at least one raises ValueError."""
    with pytest.raises(ValueError, match="rate must be > 0"):
        RateLimit(rate, burst)


def test_a_fresh_bucket_grants_its_burst_at_once() -> None:
    """A new bucket is full: it grants up to ``burst`` tokens immediately, then nothing."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(10.0, 5), clock.now)
    assert bucket.available() == 5
    assert bucket.take(8) == 5
    assert bucket.take(1) == 0
    assert bucket.available() == 0


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    """Tokens come back at ``rate`` per second and never beyond ``burst``."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(8.0, 5), clock.now)
    bucket.take(5)
    clock.advance(0.25)
    assert bucket.available() == 2
    clock.advance(0.125)
    assert bucket.take(10) == 3
    clock.advance(60.0)
    assert bucket.available() == 5


@pytest.mark.parametrize(
    ("taken", "asked", "expected_s"),
    [
        pytest.param(0, 1, 0.0, id="available now"),
        pytest.param(4, 1, 0.25, id="one missing token"),
        pytest.param(4, 3, 0.75, id="three missing tokens"),
        pytest.param(4, 100, 1.0, id="capped at the burst"),
    ],
)
def test_wait_s_says_when_tokens_will_be_available(taken: int, asked: int, expected_s: float) -> None:
    """wait_s(n) is the time until n tokens (at most the burst) are in the bucket."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(4.0, 4), clock.now)
    bucket.take(taken)
    assert bucket.wait_s(asked) == pytest.approx(expected_s)


def test_waiting_the_hinted_time_makes_the_tokens_available() -> None:
    """After advancing the clock by wait_s(n), n tokens can be taken."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(3.0, 6), clock.now)
    bucket.take(6)
    clock.advance(bucket.wait_s(4) + 1e-9)
    assert bucket.take(4) == 4


@given(
    rate=st.floats(0.5, 100.0),
    burst=st.integers(1, 50),
    steps=st.lists(st.tuples(st.floats(0.0, 2.0), st.integers(0, 60)), min_size=1, max_size=40),
)
def test_never_more_than_burst_plus_rate_times_t_over_any_interval(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    """Over every interval of length t, the tokens granted total at most burst + rate * t."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate, burst), clock.now)
    times: list[float] = []
    grants: list[int] = []
    for dt, n in steps:
        clock.advance(dt)
        granted = bucket.take(n)
        assert 0 <= granted <= n
        times.append(clock.now())
        grants.append(granted)
    for i in range(len(times)):
        total = 0
        for j in range(i, len(times)):
            total += grants[j]
            assert total <= burst + rate * (times[j] - times[i]) + 1e-6
