"""Tests for stream_service.pipeline.retry: exponential backoff, full jitter, Retry-After hints."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.config import RetrySettings
from stream_service.pipeline.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0, jitter=False)


@pytest.mark.parametrize(
    ("attempt", "expected_s"),
    [
        pytest.param(1, 0.1, id="first retry waits the initial backoff"),
        pytest.param(2, 0.2, id="doubles"),
        pytest.param(4, 0.8, id="doubles again"),
        pytest.param(5, 1.0, id="capped at max_backoff_s"),
        pytest.param(30, 1.0, id="stays capped"),
    ],
)
def test_backoff_without_jitter_is_the_exponential_ceiling(attempt: int, expected_s: float) -> None:
    """Without jitter, attempt n waits min(max_backoff_s, initial * multiplier**(n-1))."""
    assert POLICY.backoff_s(attempt, random.Random(0)) == pytest.approx(expected_s)


@given(attempt=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_backoff_with_jitter_stays_within_zero_and_the_ceiling(attempt: int, seed: int) -> None:
    """With full jitter, the delay is drawn from [0, ceiling]."""
    jittered = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0, jitter=True)
    ceiling = POLICY.backoff_s(attempt, random.Random(0))
    assert 0.0 <= jittered.backoff_s(attempt, random.Random(seed)) <= ceiling


def test_jitter_spreads_the_delays() -> None:
    """Jittered delays of the same attempt differ, so retries of a failed batch do not stampede."""
    jittered = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=1.0, jitter=True)
    rng = random.Random(7)
    delays = {jittered.backoff_s(1, rng) for _ in range(20)}
    assert len(delays) == 20


@pytest.mark.parametrize(
    ("jitter", "hint_s", "expected_s"),
    [
        pytest.param(False, 0.5, 0.5, id="larger hint wins"),
        pytest.param(False, 0.05, 0.1, id="smaller hint ignored"),
        pytest.param(False, 60.0, 1.0, id="hint capped at max_backoff_s"),
        pytest.param(True, 0.7, 0.7, id="hint wins over a jittered delay"),
        pytest.param(False, None, 0.1, id="no hint"),
    ],
)
def test_retry_after_hint(jitter: bool, hint_s: float | None, expected_s: float) -> None:
    """A server's Retry-After hint replaces a shorter delay, bounded by max_backoff_s."""
    p = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0, jitter=jitter)
    assert p.backoff_s(1, random.Random(3), hint_s) == pytest.approx(expected_s)


def test_policy_from_settings() -> None:
    """from_settings copies every retry setting."""
    s = RetrySettings(max_attempts=7, initial_backoff_s=0.2, max_backoff_s=3.0, multiplier=3.0, jitter=False)
    assert RetryPolicy.from_settings(s) == RetryPolicy(7, 0.2, 3.0, 3.0, False)
