"""Ordering gates: requests with the same key run one after another, in offset order."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class KeyGate(Generic[T]):
    """Admits at most one item per key at a time; the others wait in arrival order.

    Guarantees: for each key, items are released in the order they were offered, and an item
    is released only after the previous item of its key was :meth:`release`-d. Items of
    distinct keys never wait for each other. A ``None`` key is never gated (no ordering asked).
    """

    __slots__ = ("_waiting", "_busy")

    def __init__(self) -> None:
        self._busy: set[Hashable] = set()
        self._waiting: dict[Hashable, deque[T]] = {}

    def offer(self, key: Hashable | None, item: T) -> bool:
        """Return True when ``item`` may run now; otherwise it waits behind its key."""
        if key is None:
            return True
        if key in self._busy:
            queue = self._waiting.get(key)
            if queue is None:
                queue = self._waiting[key] = deque()
            queue.append(item)
            return False
        self._busy.add(key)
        return True

    def release(self, key: Hashable | None) -> T | None:
        """Finish the running item of ``key``; return the next waiting item, now admitted."""
        if key is None:
            return None
        queue = self._waiting.get(key)
        if queue:
            item = queue.popleft()
            if not queue:
                del self._waiting[key]
            return item
        self._busy.discard(key)
        return None

    def clear(self) -> list[T]:
        """Forget every key; return the items that were waiting (for a revoked partition)."""
        waiting = [item for queue in self._waiting.values() for item in queue]
        self._waiting.clear()
        self._busy.clear()
        return waiting

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())
