"""Consume: the poll loop. It never stops calling ``getmany``; back-pressure pauses partitions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from stream_service.observability import audit
from stream_service.pipeline.ledger import Ledger

POLL_TIMEOUT_MS = 100  # how long getmany waits for data when partitions are flowing
IDLE_POLL_S = 0.5  # how long to wait for capacity before polling again with everything paused
MAX_POLL_RECORDS = 4096  # records per getmany; bounded further by the free in-flight capacity
RESUME_FRACTION = 0.9  # global pause lifts once in-flight work is under this share of its bound


@dataclass(frozen=True, slots=True)
class BackPressurePolicy:
    """When to pause: the global in-flight bounds (requests, bytes) and a per-partition backlog bound.

    A partition is paused when the global bound is reached, or when its own waiting backlog
    reaches ``partition_backlog`` (work held back by the rate limiter or a busy key). It resumes
    with hysteresis, at half the backlog and ``RESUME_FRACTION`` of the global bound, so a
    partition does not flap on every record.
    """

    max_in_flight: int
    max_in_flight_bytes: int
    batch_max_size: int

    def partition_backlog(self, assigned: int) -> int:
        return max(self.batch_max_size, self.max_in_flight // max(1, assigned))


class PollLoop:
    """Calls ``getmany`` until stopped, handing each fetch to the ``on_records`` of :meth:`run`.

    Guarantees: the loop keeps polling while work runs (so the member never exceeds
    ``max.poll.interval.ms``), even with every partition paused; it never takes more records
    than the ledger's free in-flight capacity, so in-flight work stays within ``max_in_flight``.
    It alone pauses and resumes partitions; :meth:`assigned` forgets the pauses of an earlier
    assignment (back-pressure state must not survive a rebalance). After :meth:`stop` nothing
    more is handed on, not even a fetch that was already under way.
    """

    def __init__(
        self,
        consumer: Any,
        ledger: Ledger,
        policy: BackPressurePolicy,
        *,
        on_pause_change: Callable[[int], None] | None = None,
        on_pause: Callable[[str], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._ledger = ledger
        self._policy = policy
        self._paused: set[TopicPartition] = set()
        self._held: set[TopicPartition] = set()  # paused until released, whatever the back-pressure
        self._stop = asyncio.Event()
        self._log = structlog.get_logger("stream_service.consume")
        self._on_pause_change = on_pause_change
        self._on_pause = on_pause

    def stop(self) -> None:
        self._stop.set()

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """A new assignment: nothing is paused by back-pressure any more (held partitions stay paused)."""
        self._paused.clear()
        self._held.intersection_update(partitions)
        self._consumer.resume(*(tp for tp in partitions if tp not in self._held))

    def hold(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch nothing of these partitions until :meth:`release` (they are not ready, or lost)."""
        held = list(partitions)
        self._held.update(held)
        self._consumer.pause(*held)

    def release(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch these partitions again (back-pressure may still pause them)."""
        released = [tp for tp in partitions if tp in self._held]
        self._held.difference_update(released)
        self._consumer.resume(*(tp for tp in released if tp not in self._paused))

    async def from_committed(self, partitions: Iterable[TopicPartition]) -> None:
        """Read these partitions from their committed offsets (as the group stores them now)."""
        await self._consumer.seek_to_committed(*partitions)

    async def rewind(self, tp: TopicPartition, offset: int | None) -> None:
        """Read ``tp`` again from ``offset`` (None: from its committed offset)."""
        if offset is None:
            await self._consumer.seek_to_committed(tp)
        else:
            self._consumer.seek(tp, offset)

    @property
    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(self._paused)

    def _apply_back_pressure(self) -> int:
        """Pause or resume partitions; return the number of records that may be taken now."""
        ledger, policy, paused = self._ledger, self._policy, self._paused
        free = policy.max_in_flight - ledger.tracked
        free_bytes = policy.max_in_flight_bytes - ledger.nbytes
        states = ledger.states
        backlog = policy.partition_backlog(len(states))
        global_full = free <= 0 or free_bytes <= 0
        global_ok = ledger.tracked <= policy.max_in_flight * RESUME_FRACTION and free_bytes > 0
        to_pause: list[TopicPartition] = []
        to_resume: list[TopicPartition] = []
        reason = "in_flight_full" if free <= 0 else "in_flight_bytes_full" if free_bytes <= 0 else "backlog"
        held = self._held
        for tp, state in states.items():
            if state.revoked or tp in held:
                continue
            if tp not in paused:
                if global_full or state.queued >= backlog:
                    paused.add(tp)
                    to_pause.append(tp)
            elif global_ok and state.queued <= backlog // 2:
                paused.discard(tp)
                to_resume.append(tp)
        if not paused.issubset(states.keys()):
            paused.intersection_update(states.keys())  # partitions revoked since they were paused
        if to_pause:
            self._consumer.pause(*to_pause)
            audit.paused(self._log, [(tp.topic, tp.partition) for tp in to_pause], reason)
            if self._on_pause is not None:
                self._on_pause(reason)
        if to_resume:
            self._consumer.resume(*to_resume)
            audit.resumed(self._log, [(tp.topic, tp.partition) for tp in to_resume], "capacity")
        if (to_pause or to_resume) and self._on_pause_change is not None:
            self._on_pause_change(len(paused))
        return max(0, free)

    async def run(self, on_records: Callable[[Mapping[TopicPartition, Sequence[Any]]], None]) -> None:
        ledger = self._ledger
        while not self._stop.is_set():
            free = self._apply_back_pressure()
            flowing = any(tp not in self._paused and tp not in self._held for tp in ledger.states)
            if free <= 0 or not flowing:
                ledger.capacity_changed.clear()
                try:
                    async with asyncio.timeout(IDLE_POLL_S):
                        await ledger.capacity_changed.wait()
                except TimeoutError:
                    pass
                # Re-check: an assignment may have arrived while waiting, and must be paused too.
                free = self._apply_back_pressure()
                timeout_ms, max_records = 0, max(1, min(free, MAX_POLL_RECORDS))
            else:
                timeout_ms, max_records = POLL_TIMEOUT_MS, min(free, MAX_POLL_RECORDS)
            if self._stop.is_set():
                break
            try:
                batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            except KafkaError as exc:
                # The client reconnects by itself (broker restart, leader move); keep polling.
                self._log.warning("poll.error", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(IDLE_POLL_S)
                continue
            # A fetch that returns after stop() is dropped: the drain that stopped the loop waits
            # only for the work it knows of, and commits nothing past these records, so they are
            # read again by whoever owns the partition next (handing them on could publish outputs
            # whose offsets are never committed: duplicates after a clean stop).
            if batch and not self._stop.is_set():
                on_records(batch)
