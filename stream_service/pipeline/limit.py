"""Token buckets: a frozen :class:`RateLimit` (policy) and a mutable :class:`TokenBucket` (state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate_per_s`` tokens are added per second, up to ``burst`` tokens. One request costs one token."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {self.rate_per_s}/s burst {self.burst}")


class TokenBucket:
    """The state of one :class:`RateLimit`, advanced by an injected clock (seconds).

    Guarantees: over any interval of length ``t`` at most ``burst + rate * t`` tokens are taken.
    It never blocks: :meth:`take` grants what is available now and :meth:`wait_s` says how long
    until ``n`` tokens will be.
    """

    __slots__ = ("limit", "_clock", "_tokens", "_updated")

    def __init__(self, limit: RateLimit, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._updated = clock()

    def _refill(self) -> float:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(float(self.limit.burst), self._tokens + elapsed * self.limit.rate_per_s)
            self._updated = now
        return self._tokens

    def available(self) -> int:
        """Whole tokens that could be taken now."""
        return int(self._refill())

    def full(self) -> bool:
        """Whether the bucket holds ``burst`` tokens (a fresh bucket's state)."""
        return self._refill() >= self.limit.burst

    def take(self, n: int) -> int:
        """Take up to ``n`` whole tokens; return how many were granted."""
        granted = min(n, int(self._refill()))
        if granted > 0:
            self._tokens -= granted
        return granted

    def wait_s(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens are available (0 when they are now)."""
        missing = min(n, self.limit.burst) - self._refill()
        return 0.0 if missing <= 0 else missing / self.limit.rate_per_s
