"""Per-partition tracking of out-of-order completion, so commits never pass unfinished work."""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """Tracks the offsets of one partition from consumption until their output is acknowledged.

    Guarantees: :meth:`committable` is always ``o + 1`` for the highest offset ``o`` such that
    every offset added up to and including ``o`` is done, so committing it never skips
    unfinished work. Offsets must be added in increasing order (as Kafka delivers them); gaps
    (compaction, transaction markers) are fine. ``add`` and ``done`` are amortised O(1).
    Rejects: an offset added out of order (``ValueError``), since that breaks the invariant.
    """

    __slots__ = ("_pending", "_done", "_committable", "_last_added", "released")

    def __init__(self, committed: int | None = None) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._committable: int | None = committed
        self._last_added = -1 if committed is None else committed - 1
        self.released = 0  # offsets that left the pending prefix since the last take_released()

    def add(self, offset: int) -> None:
        """Register a consumed offset that is not finished yet."""
        if offset <= self._last_added:
            raise ValueError(f"offset {offset} added after {self._last_added}; offsets must increase")
        self._last_added = offset
        self._pending.append(offset)

    def done(self, offset: int) -> None:
        """Mark an added offset finished (its output acknowledged)."""
        pending = self._pending
        if pending and pending[0] == offset:
            pending.popleft()
            self._committable = offset + 1
            self.released += 1
            done = self._done
            # Drain offsets that finished earlier, out of order, and are now contiguous.
            while done and pending and pending[0] in done:
                head = pending.popleft()
                done.discard(head)
                self._committable = head + 1
                self.released += 1
        else:
            self._done.add(offset)

    def committable(self) -> int | None:
        """The offset to commit (next to consume), or None when nothing has finished yet."""
        return self._committable

    def take_released(self) -> int:
        """How many offsets became committable since the last call (to count what a commit frees)."""
        n, self.released = self.released, 0
        return n

    def held(self) -> int:
        """Offsets added and not yet handed out by :meth:`take_released` (finished or not)."""
        return len(self._pending) + self.released

    @property
    def outstanding(self) -> int:
        """How many added offsets are not finished."""
        return len(self._pending) - len(self._done)
