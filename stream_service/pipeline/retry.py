"""Retry policy: exponential backoff with full jitter, bounded attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass

from stream_service.settings import RetrySettings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt ``n`` (1-based) that failed retriably waits ``backoff_s(n)`` before attempt ``n + 1``.

    The delay is drawn uniformly from ``[0, min(max_backoff_s, initial_backoff_s * multiplier**(n-1))]``
    (full jitter, so retries of a failed batch do not stampede together); without jitter it is
    the upper bound itself. A server's ``Retry-After`` hint, when larger, wins.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: bool = True

    @classmethod
    def from_settings(cls, s: RetrySettings) -> RetryPolicy:
        return cls(s.max_attempts, s.initial_backoff_s, s.max_backoff_s, s.multiplier, s.jitter)

    def backoff_s(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        delay = rng.uniform(0.0, ceiling) if self.jitter else ceiling
        if retry_after_s is not None and retry_after_s > delay:
            delay = min(retry_after_s, max(self.max_backoff_s, ceiling))
        return delay
