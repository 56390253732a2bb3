"""Commit: the contiguous finished prefix of each partition, about once a second and on demand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from stream_service.pipeline.ledger import Ledger


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """When to commit: every ``interval_s``, or as soon as ``release_threshold`` finished records
    wait for a commit (finished work holds in-flight capacity until it is committed), or when
    nothing is active any more (so an idle partition's last records are committed promptly)."""

    interval_s: float
    release_threshold: int

    @classmethod
    def for_capacity(cls, interval_s: float, max_in_flight: int) -> CommitPolicy:
        """A quarter of the in-flight bound may wait for a commit before one is forced."""
        return cls(interval_s, max(1, max_in_flight // 4))


class CommitPolicyState:
    """The state of a :class:`CommitPolicy`: when the last commit was, and whether one is due.

    ``should_commit`` is asked with the ledger's numbers after work finishes; ``did_commit``
    is told after each commit attempt. Time comes from the injected clock.
    """

    __slots__ = ("policy", "_clock", "_last")

    def __init__(self, policy: CommitPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._last = clock()

    def should_commit(self, tracked: int, active: int) -> bool:
        """Whether to commit now rather than at the next interval."""
        waiting = tracked - active  # finished (or dropped) records not yet released by a commit
        if waiting <= 0:
            return False
        return active == 0 or waiting >= self.policy.release_threshold

    def wait_s(self) -> float:
        """Seconds until the interval is up."""
        return max(0.0, self._last + self.policy.interval_s - self._clock())

    def did_commit(self) -> None:
        self._last = self._clock()


class Committer:
    """Commits ``offset + 1`` of the contiguous finished prefix of every partition.

    Guarantees: it never commits past a record whose output is not acknowledged (the trackers
    only advance on acknowledgement); right before committing, offsets are filtered against the
    consumer's current assignment, so a partition revoked during an ``await`` is not committed
    (that would fail the whole commit). Only offsets that moved are sent. A failed commit is
    logged and retried at the next call; nothing is lost, at worst redelivered. The ledger is
    told what was committed only after the broker accepted it.
    """

    def __init__(
        self,
        consumer: Any,
        ledger: Ledger,
        *,
        on_commit: Callable[[dict[TopicPartition, int]], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._ledger = ledger
        self._on_commit = on_commit
        self._on_failure = on_failure
        self._log = structlog.get_logger("stream_service.commit")

    def pending(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Offsets that moved since the last commit, for the given (default: all) partitions."""
        assignment = self._consumer.assignment()
        points = self._ledger.commit_points(partitions)
        return {tp: point.offset for tp, (_, point) in points.items() if tp in assignment}

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> bool:
        """Commit what may be committed now; return False when the broker refused."""
        assignment = self._consumer.assignment()
        points = {tp: p for tp, p in self._ledger.commit_points(partitions).items() if tp in assignment}
        if not points:
            return True
        offsets = {tp: point.offset for tp, (_, point) in points.items()}
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            self._log.warning("commit.failed", error=f"{type(exc).__name__}: {exc}", partitions=len(offsets))
            if self._on_failure is not None:
                self._on_failure(exc)
            return False
        self._ledger.committed(points)
        if self._on_commit is not None:
            self._on_commit(offsets)
        return True


class Commits(Protocol):
    """What commits: :class:`Committer` (consumer offsets) or the transactions (exactly once)."""

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> bool: ...


class CommitLoop:
    """Commits about once per interval, sooner when the policy says finished work holds capacity.

    ``wanted()`` is called by the engine after work finishes; ``after_commit`` runs after every
    round (the engine refreshes the lag gauges there).
    """

    def __init__(
        self,
        committer: Commits,
        ledger: Ledger,
        policy: CommitPolicy,
        *,
        after_commit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.committer = committer
        self._ledger = ledger
        self._state = CommitPolicyState(policy, clock)
        self._after_commit = after_commit
        self._wanted = asyncio.Event()

    def wanted(self) -> None:
        """Work finished: commit now if the policy says so."""
        if self._state.should_commit(self._ledger.tracked, self._ledger.active):
            self._wanted.set()

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._state.wait_s()):
                    await self._wanted.wait()
            except TimeoutError:
                pass
            self._wanted.clear()  # before committing: work finishing meanwhile asks again
            await self.committer.commit()
            self._state.did_commit()
            if self._after_commit is not None:
                self._after_commit()


def refresh_lag(consumer: Any, ledger: Ledger, set_lag: Callable[[str, int, int], None]) -> None:
    """Set each assigned partition's lag: high watermark minus the committable offset."""
    for tp, state in ledger.states.items():
        high = consumer.highwater(tp)
        done = state.tracker.committable()
        if high is not None and done is not None:
            set_lag(tp.topic, tp.partition, high - done)
