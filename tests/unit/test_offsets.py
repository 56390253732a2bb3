"""Tests for stream_service.pipeline.offsets: the committable offset never passes unfinished work."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.pipeline.offsets import CommitPoint, OffsetTracker


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
        assert tracker.held() == len(offsets), "nothing is released before a commit"
    assert tracker.committable() == offsets[-1] + 1


@given(data=st.data(), n=st.integers(1, 40))
def test_interleaved_adds_and_completions_keep_the_prefix_invariant(data: st.DataObject, n: int) -> None:
    """Adding new offsets while earlier ones finish never lets committable pass an unfinished offset."""
    tracker = OffsetTracker()
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
        assert tracker.committable() == _expected(added, done, None)


def test_nothing_committable_before_the_first_completion() -> None:
    """A fresh tracker has nothing to commit, even with offsets added."""
    tracker = OffsetTracker()
    tracker.add(0)
    tracker.add(1)
    assert tracker.committable() is None
    assert tracker.commit_point() is None


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
    assert tracker.commit_point() == CommitPoint(10, 3)


@pytest.mark.parametrize(
    ("added", "bad"),
    [
        pytest.param([3], 3, id="same offset twice"),
        pytest.param([3, 7], 5, id="lower than the last added"),
    ],
)
def test_out_of_order_add_is_rejected(added: list[int], bad: int) -> None:
    """Adding an offset not above the last one raises ValueError, naming both offsets."""
    tracker = OffsetTracker()
    for offset in added:
        tracker.add(offset)
    with pytest.raises(ValueError, match=f"offset {bad} added after"):
        tracker.add(bad)


def test_a_commit_releases_the_offsets_its_point_covered_once() -> None:
    """committed(point) releases the offsets finished when the point was taken, and only once."""
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.add(offset)
    tracker.done(1)
    assert tracker.commit_point() is None, "offset 1 is finished but not committable yet"
    tracker.done(0)
    point = tracker.commit_point()
    assert point == CommitPoint(2, 2)
    tracker.done(2)  # finishes while the commit of ``point`` is under way
    assert tracker.committed(point) == 2
    assert tracker.held() == 3, "offset 2 finished after the point was taken; 3 and 4 are pending"
    assert tracker.committed(point) == 0, "the same point releases nothing twice"
    later = tracker.commit_point()
    assert later == CommitPoint(3, 3)
    assert tracker.committed(later) == 1
    assert tracker.held() == 2
    assert tracker.commit_point() is None, "nothing moved since the last commit"


@given(data=st.data(), n=st.integers(1, 50))
def test_every_added_offset_is_released_exactly_once(data: st.DataObject, n: int) -> None:
    """Over any completion order and any failed or stale commits, releases sum to the offsets added."""
    tracker = OffsetTracker()
    for offset in range(n):
        tracker.add(offset)
    total = 0
    taken: list[CommitPoint] = []
    for offset in data.draw(st.permutations(range(n))):
        tracker.done(offset)
        point = tracker.commit_point()
        if point is not None and data.draw(st.booleans(), label="take a point"):
            taken.append(point)
        if taken and data.draw(st.booleans(), label="a commit answers"):
            answered = taken.pop(data.draw(st.integers(0, len(taken) - 1), label="which"))
            if data.draw(st.booleans(), label="it succeeded"):
                total += tracker.committed(answered)
        assert tracker.held() + total == n
    final = tracker.commit_point()
    if final is not None:
        total += tracker.committed(final)
    assert total == n
    assert tracker.held() == 0
