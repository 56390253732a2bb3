"""Per-partition tracking of out-of-order completion, so commits never pass unfinished work."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple


class CommitPoint(NamedTuple):
    """What a commit of one partition would cover: the ``offset`` to commit (next to consume)
    and ``finished``, how many offsets the tracker had finished contiguously when it was taken."""

    offset: int
    finished: int


class OffsetTracker:
    """Tracks the offsets of one partition from consumption until they are committed.

    Guarantees: :meth:`committable` is always ``o + 1`` for the highest offset ``o`` such that
    every offset added up to and including ``o`` is done, so committing it never skips
    unfinished work. Offsets must be added in increasing order (as Kafka delivers them); gaps
    (compaction, transaction markers) are fine. ``add`` and ``done`` are amortised O(1).
    :meth:`held` counts the offsets added and not yet covered by a commit, finished or not.
    Rejects: an offset added out of order (``ValueError``), since that breaks the invariant.
    """

    __slots__ = (
        "_pending", "_done", "_committable", "_first_added", "_last_added",
        "_added", "_finished", "_committed",
    )  # fmt: skip

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._committable: int | None = None
        self._first_added: int | None = None
        self._last_added = -1
        self._added = 0  # offsets ever added
        self._finished = 0  # offsets that left the unfinished prefix (became committable)
        self._committed: CommitPoint | None = None  # the last commit that succeeded

    def add(self, offset: int) -> None:
        """Register a consumed offset that is not finished yet."""
        if offset <= self._last_added:
            raise ValueError(f"offset {offset} added after {self._last_added}; offsets must increase")
        if self._first_added is None:
            self._first_added = offset
        self._last_added = offset
        self._pending.append(offset)
        self._added += 1

    def done(self, offset: int) -> None:
        """Mark an added offset finished (its output acknowledged)."""
        pending = self._pending
        if pending and pending[0] == offset:
            pending.popleft()
            self._committable = offset + 1
            self._finished += 1
            done = self._done
            # Drain offsets that finished earlier, out of order, and are now contiguous.
            while done and pending and pending[0] in done:
                head = pending.popleft()
                done.discard(head)
                self._committable = head + 1
                self._finished += 1
        else:
            self._done.add(offset)

    @property
    def first_added(self) -> int | None:
        """The first offset added (None before it): where this partition's reading began."""
        return self._first_added

    @property
    def last_added(self) -> int:
        """The highest offset added (-1 before the first)."""
        return self._last_added

    def committable(self) -> int | None:
        """The offset to commit (next to consume), or None when nothing has finished yet."""
        return self._committable

    def commit_point(self) -> CommitPoint | None:
        """What a commit now would cover, or None when nothing moved since the last commit."""
        offset = self._committable
        if offset is None or (self._committed is not None and offset <= self._committed.offset):
            return None
        return CommitPoint(offset, self._finished)

    def committed(self, point: CommitPoint) -> int:
        """Record that ``point`` was committed; return how many offsets that released."""
        before = self._committed.finished if self._committed is not None else 0
        if point.finished <= before:
            return 0  # an older point than one already recorded
        self._committed = point
        return point.finished - before

    def held(self) -> int:
        """Offsets added and not covered by a commit (finished or not)."""
        return self._added - (self._committed.finished if self._committed is not None else 0)
