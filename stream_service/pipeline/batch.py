"""Adaptive micro-batching: how big the next batch may be, and when a buffered batch closes."""

from __future__ import annotations

from dataclasses import dataclass

from stream_service.settings import BatchSettings


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When a batch closes: at ``max_size`` records, at ``max_bytes``, or ``linger_s`` after its
    first record was buffered. With ``adaptive``, the size target moves between ``min_size`` and
    ``max_size`` to keep a batch's execution near ``target_s`` (AIMD)."""

    max_size: int
    min_size: int
    initial_size: int
    max_bytes: int
    linger_s: float
    adaptive: bool
    target_s: float
    increase_fraction: float = 1 / 16  # additive step: this share of the max_size - min_size span
    decrease_factor: float = 0.5

    @classmethod
    def from_settings(cls, s: BatchSettings) -> BatchPolicy:
        return cls(
            max_size=s.max_size,
            min_size=min(s.min_size, s.max_size),
            initial_size=max(min(s.initial_size, s.max_size), min(s.min_size, s.max_size)),
            max_bytes=s.max_bytes,
            linger_s=s.linger_ms / 1000.0,
            adaptive=s.adaptive,
            target_s=s.target_batch_ms / 1000.0,
        )


class BatchSizer:
    """The current batch-size target, adapted by additive increase / multiplicative decrease.

    Guarantees: ``size`` always lies in ``[min_size, max_size]``; without ``adaptive`` it is
    ``max_size`` and never moves. A batch that ran longer than the target halves the size; a
    full batch that ran under 80% of the target grows it by a step. Batches that were not full
    say nothing about capacity and leave it alone.
    """

    __slots__ = ("policy", "size", "_step")

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self.size = policy.initial_size if policy.adaptive else policy.max_size
        span = policy.max_size - policy.min_size
        self._step = max(1, int(span * policy.increase_fraction))

    def record(self, batch_len: int, elapsed_s: float) -> int:
        """Feed back one executed batch; return the new size target."""
        p = self.policy
        if not p.adaptive:
            return self.size
        if elapsed_s > p.target_s:
            self.size = max(p.min_size, int(self.size * p.decrease_factor))
        elif batch_len >= self.size and elapsed_s < 0.8 * p.target_s:
            self.size = min(p.max_size, self.size + self._step)
        return self.size
