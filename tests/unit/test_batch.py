"""Tests for stream_service.pipeline.batch: the AIMD batch-size target."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.config import BatchSettings
from stream_service.pipeline.batch import BatchPolicy, BatchSizer

TARGET_S = 0.05


def policy(
    *, adaptive: bool = True, min_size: int = 10, max_size: int = 100, initial: int = 40
) -> BatchPolicy:
    return BatchPolicy(
        max_size=max_size,
        min_size=min_size,
        initial_size=initial,
        max_bytes=1 << 20,
        linger_s=0.005,
        adaptive=adaptive,
        target_s=TARGET_S,
    )


def test_starts_at_the_initial_size() -> None:
    """An adaptive sizer starts at initial_size."""
    assert BatchSizer(policy()).size == 40


def test_slow_batch_halves_the_size_down_to_min() -> None:
    """A batch slower than the target halves the size, never below min_size."""
    sizer = BatchSizer(policy())
    assert sizer.record(40, TARGET_S * 1.5) == 20
    assert sizer.record(20, TARGET_S * 1.5) == 10
    assert sizer.record(10, TARGET_S * 10) == 10


def test_slow_partial_batch_still_halves() -> None:
    """Even a batch that was not full shrinks the size when it ran over the target."""
    sizer = BatchSizer(policy())
    assert sizer.record(5, TARGET_S * 2) == 20


def test_fast_full_batch_grows_the_size_up_to_max() -> None:
    """A full batch well under the target grows the size by a fixed step, capped at max_size."""
    sizer = BatchSizer(policy())
    first = sizer.record(40, TARGET_S * 0.1)
    step = first - 40
    assert step >= 1
    assert sizer.record(first, TARGET_S * 0.1) == first + step
    for _ in range(100):
        sizer.record(sizer.size, TARGET_S * 0.1)
    assert sizer.size == 100


@pytest.mark.parametrize(
    ("batch_len", "elapsed_s"),
    [
        pytest.param(39, TARGET_S * 0.1, id="fast but not full"),
        pytest.param(1, 0.0, id="single record, instant"),
        pytest.param(40, TARGET_S * 0.9, id="full, near the target"),
        pytest.param(40, TARGET_S, id="full, exactly at the target"),
    ],
)
def test_size_is_left_alone(batch_len: int, elapsed_s: float) -> None:
    """Non-full fast batches, and full ones between 80% and 100% of the target, leave the size alone."""
    sizer = BatchSizer(policy())
    assert sizer.record(batch_len, elapsed_s) == 40


@pytest.mark.parametrize(
    "elapsed_s",
    [pytest.param(0.0, id="instant"), pytest.param(TARGET_S * 100, id="very slow")],
)
def test_fixed_size_when_not_adaptive(elapsed_s: float) -> None:
    """Without adaptive, the size is max_size and never moves."""
    sizer = BatchSizer(policy(adaptive=False))
    assert sizer.size == 100
    assert sizer.record(100, elapsed_s) == 100
    assert sizer.size == 100


@given(
    min_size=st.integers(1, 50),
    span=st.integers(0, 500),
    feedback=st.lists(st.tuples(st.integers(0, 600), st.floats(0.0, 1.0)), max_size=60),
)
def test_size_always_within_min_and_max(min_size: int, span: int, feedback: list[tuple[int, float]]) -> None:
    """Whatever feedback arrives, the size stays within [min_size, max_size]."""
    p = policy(min_size=min_size, max_size=min_size + span, initial=min_size + span // 2)
    sizer = BatchSizer(p)
    for batch_len, elapsed_s in feedback:
        size = sizer.record(batch_len, elapsed_s)
        assert p.min_size <= size <= p.max_size


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            BatchSettings(max_size=512, min_size=8, initial_size=64, linger_ms=5.0, target_batch_ms=50.0),
            (512, 8, 64, 0.005, 0.05),
            id="defaults",
        ),
        pytest.param(
            BatchSettings(max_size=4, min_size=8, initial_size=64),
            (4, 4, 4, 0.005, 0.05),
            id="min and initial clamped to max",
        ),
        pytest.param(
            BatchSettings(max_size=100, min_size=20, initial_size=10, linger_ms=0.0),
            (100, 20, 20, 0.0, 0.05),
            id="initial raised to min",
        ),
    ],
)
def test_policy_from_settings(settings: BatchSettings, expected: tuple[int, int, int, float, float]) -> None:
    """from_settings converts milliseconds to seconds and keeps min <= initial <= max."""
    p = BatchPolicy.from_settings(settings)
    assert (p.max_size, p.min_size, p.initial_size, p.linger_s, p.target_s) == pytest.approx(expected)
