"""Pacing for ``stream-service produce --rate``: how many records are due now, and how long to wait.

Record ``i`` is scheduled at ``i / rate`` seconds after the start of the run. Each step sends
every record whose time has come, so a late step (a slow hand-off to the producer, a busy event
loop) is made up by a larger next chunk instead of lowering the rate: the offered rate is met
whenever the producer can keep up. Acknowledgements play no part in the schedule.

Pure arithmetic on elapsed seconds: the caller reads its own (injected) clock, so the schedule
is tested by stepping numbers, not by sleeping.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["Pace"]

DEFAULT_INTERVAL_S = 0.01


class Pace(msgspec.Struct, frozen=True, kw_only=True):
    """Send ``rate_per_s`` records per second from the start, in chunks at least ``interval_s`` apart.

    The first record is due at once. Rejects (ValueError) a rate that is not a finite number > 0,
    or an interval that is not > 0.
    """

    rate_per_s: float
    # Waits are never shorter than this: at high rates records go out in chunks of about
    # rate * interval rather than one wake-up per record.
    interval_s: float = DEFAULT_INTERVAL_S

    def __post_init__(self) -> None:
        if not (self.rate_per_s > 0 and math.isfinite(self.rate_per_s)):
            raise ValueError(f"rate_per_s must be a finite number > 0, got {self.rate_per_s}")
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s}")

    def due(self, elapsed_s: float, sent: int) -> int:
        """How many records to send now: those scheduled by ``elapsed_s`` that are not ``sent`` yet."""
        scheduled = math.floor(elapsed_s * self.rate_per_s) + 1
        return max(0, scheduled - sent)

    def wait_s(self, elapsed_s: float, sent: int) -> float:
        """Seconds until record number ``sent`` is due, and at least ``interval_s``."""
        return max(sent / self.rate_per_s - elapsed_s, self.interval_s)
