"""Tests for stream_service.pipeline.offsets: the committable offset never passes unfinished work."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.pipeline.offsets import OffsetTracker


def _expected(offsets: list[int], done: set[int], committed: int | None) -> int | None:
    """1 + the last offset of the longest all-done prefix (or the starting point)."""
    result = committed
    for offset in offsets:
        if offset not in done:
            break
        result = offset + 1
    return result


@given(
    data=st.data(),
    offsets=st.lists(st.integers(0, 10_000), min_size=1, max_size=60, unique=True).map(sorted),
)
def test_committable_is_the_contiguous_done_prefix_under_any_completion_order(
    data: st.DataObject, offsets: list[int]
) -> None:
    """Whatever order offsets finish in, committable is 1 + the last offset of the done prefix."""
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.add(offset)
    order = data.draw(st.permutations(offsets), label="completion order")
    done: set[int] = set()
    for offset in order:
        tracker.done(offset)
        done.add(offset)
        assert tracker.committable() == _expected(offsets, done, None)
        assert tracker.outstanding == len(offsets) - len(done)
    assert tracker.committable() == offsets[-1] + 1


@given(data=st.data(), n=st.integers(1, 40))
def test_interleaved_adds_and_completions_keep_the_prefix_invariant(data: st.DataObject, n: int) -> None:
    """Adding new offsets while earlier ones finish never lets committable pass an unfinished offset."""
    tracker = OffsetTracker(committed=5)
    added: list[int] = []
    done: set[int] = set()
    next_offset = 5
    for _ in range(n * 2):
        unfinished = [o for o in added if o not in done]
        if unfinished and data.draw(st.booleans(), label="complete one"):
            offset = data.draw(st.sampled_from(unfinished), label="which")
            tracker.done(offset)
            done.add(offset)
        else:
            next_offset += data.draw(st.integers(0, 3), label="gap")
            tracker.add(next_offset)
            added.append(next_offset)
            next_offset += 1
        assert tracker.committable() == _expected(added, done, 5)


def test_nothing_committable_before_the_first_completion() -> None:
    """A fresh tracker has nothing to commit, even with offsets added."""
    tracker = OffsetTracker()
    tracker.add(0)
    tracker.add(1)
    assert tracker.committable() is None
    assert tracker.outstanding == 2


def test_starting_point_is_committable_until_work_finishes() -> None:
    """A tracker resumed at a committed offset reports it until later work finishes."""
    tracker = OffsetTracker(committed=42)
    assert tracker.committable() == 42
    tracker.add(42)
    tracker.add(43)
    tracker.done(43)
    assert tracker.committable() == 42
    tracker.done(42)
    assert tracker.committable() == 44


def test_gaps_in_offsets_are_skipped() -> None:
    """Offsets missing from the log (compaction, transaction markers) do not hold the commit back."""
    tracker = OffsetTracker()
    for offset in (0, 5, 9):
        tracker.add(offset)
    tracker.done(0)
    assert tracker.committable() == 1
    tracker.done(9)
    assert tracker.committable() == 1
    tracker.done(5)
    assert tracker.committable() == 10
    assert tracker.outstanding == 0


@pytest.mark.parametrize(
    ("committed", "added", "bad"),
    [
        pytest.param(None, [3], 3, id="same offset twice"),
        pytest.param(None, [3, 7], 5, id="lower than the last added"),
        pytest.param(10, [], 9, id="below the committed starting point"),
    ],
)
def test_out_of_order_add_is_rejected(committed: int | None, added: list[int], bad: int) -> None:
    """Adding an offset not above the last one raises ValueError, naming both offsets."""
    tracker = OffsetTracker(committed)
    for offset in added:
        tracker.add(offset)
    with pytest.raises(ValueError, match=f"offset {bad} added after"):
        tracker.add(bad)


def test_released_counts_offsets_that_became_committable_once() -> None:
    """take_released() returns how many offsets joined the committable prefix since the last call."""
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.add(offset)
    tracker.done(1)
    assert tracker.take_released() == 0, "offset 1 is finished but not committable yet"
    tracker.done(0)
    assert tracker.take_released() == 2
    assert tracker.take_released() == 0
    tracker.done(2)
    assert tracker.held() == 3, "offset 2 is released but not taken; 3 and 4 are pending"
    assert tracker.take_released() == 1
    assert tracker.held() == 2


@given(data=st.data(), n=st.integers(1, 50))
def test_every_added_offset_is_released_exactly_once(data: st.DataObject, n: int) -> None:
    """Over any completion order, the released counts sum to the number of offsets added."""
    tracker = OffsetTracker()
    for offset in range(n):
        tracker.add(offset)
    total = 0
    for offset in data.draw(st.permutations(range(n))):
        tracker.done(offset)
        if data.draw(st.booleans()):
            total += tracker.take_released()
        assert tracker.held() + total == n
    total += tracker.take_released()
    assert total == n
    assert tracker.held() == 0
