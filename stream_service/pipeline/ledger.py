"""The ledger: in-flight accounting of every consumed record, with one writer.

Back-pressure, drains and commits all read these numbers; only the ledger's methods change
them, so each invariant is kept in one place (and asserted by :meth:`Ledger.check`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from aiokafka import TopicPartition

from stream_service.pipeline.offsets import CommitPoint
from stream_service.pipeline.work import PartitionState, WorkItem


class Ledger:
    """Counts consumed records from the moment they are fetched until they are released.

    A record is *queued* (waiting for its key gate or the scheduler), then *running*
    (dispatched, following an identical request that runs, or answered without running; its
    output is being published), then *finished*
    (output acknowledged), and finally *released*: its offset committed, or its partition
    forgotten. A queued record of a revoked partition is *dropped* instead: it gets no output
    here and is redelivered to the partition's next owner.

    Counters (read them, never write them):

    - ``tracked``: consumed and not released. Bounded by ``max_in_flight`` through the poll
      loop, so a crash redelivers at most that many records;
    - ``active``: consumed and neither finished nor dropped;
    - ``nbytes``: record bytes of the active records (the memory they hold);
    - per partition, ``PartitionState.queued`` and ``PartitionState.in_flight`` (running).

    Invariants, asserted by :meth:`check`:

    - ``0 <= active <= tracked`` and ``nbytes >= 0``; ``nbytes == 0`` when ``active == 0``;
    - ``active`` = queued + running of the assigned partitions + running of forgotten ones;
    - ``tracked`` = offsets held by the assigned partitions' trackers + running of forgotten
      partitions (a record still running when its partition was forgotten keeps its capacity
      until it finishes: it holds memory and an executor slot either way).

    Events: ``capacity_changed`` is set whenever ``tracked`` or ``nbytes`` fall or the
    assignment changes; ``work_finished`` whenever records finish or are dropped. Waiters clear
    an event, re-check their condition, then wait, so several may share one.
    """

    def __init__(
        self,
        *,
        ordered: bool,
        on_levels: Callable[[int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ordered = ordered
        self._on_levels = on_levels
        self._clock = clock
        self._states: dict[TopicPartition, PartitionState] = {}
        self._orphans: set[PartitionState] = set()  # forgotten, with records still running
        self.tracked = 0
        self.active = 0
        self.nbytes = 0
        self.capacity_changed = asyncio.Event()
        self.work_finished = asyncio.Event()

    @property
    def states(self) -> Mapping[TopicPartition, PartitionState]:
        """The assigned partitions' states (a read-only view)."""
        return self._states

    def _levels(self) -> None:
        if self._on_levels is not None:
            self._on_levels(self.tracked, self.nbytes)

    # ------------------------------------------------------------------------- partitions

    def open(self, partitions: Iterable[TopicPartition]) -> list[PartitionState]:
        """Fresh state for each partition (a new assignment), replacing any earlier one."""
        opened = []
        for tp in partitions:
            previous = self._states.get(tp)
            if previous is not None:
                self._release(tp, previous)
            state = self._states[tp] = PartitionState(tp.topic, tp.partition, ordered=self._ordered)
            opened.append(state)
        self.capacity_changed.set()
        self._levels()
        return opened

    def revoke(self, partitions: Iterable[TopicPartition]) -> list[PartitionState]:
        """Mark partitions as no longer admitting; return their states."""
        revoked = []
        for tp in partitions:
            state = self._states.get(tp)
            if state is not None:
                state.revoked = True
                revoked.append(state)
        return revoked

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Release revoked partitions: whatever they hold is no longer ours to commit."""
        for tp in partitions:
            state = self._states.get(tp)
            if state is not None:
                self._release(tp, state)
        self.capacity_changed.set()
        self._levels()

    def _release(self, tp: TopicPartition, state: PartitionState) -> None:
        del self._states[tp]
        if state.queued:
            raise RuntimeError(f"{state!r} forgotten with queued records: drop them first")
        state.forgotten = True
        self.tracked -= state.tracker.held() - state.in_flight
        if state.in_flight:
            self._orphans.add(state)

    # ------------------------------------------------------------------------- records

    def consumed(self, items: Sequence[WorkItem]) -> None:
        """Records fetched from the consumer; each starts queued and gets its rank (``seq``)."""
        nbytes = 0
        for item in items:
            state = item.state
            state.tracker.add(item.offset)
            state.queued += 1
            item.seq = state.consumed
            state.consumed += 1
            nbytes += item.size
        self.tracked += len(items)
        self.active += len(items)
        self.nbytes += nbytes
        self._levels()

    def started(self, items: Iterable[WorkItem]) -> None:
        """Queued records leave the queue: dispatched, or answered without running."""
        for item in items:
            state = item.state
            state.queued -= 1
            state.in_flight += 1
            item.running = True

    def requeued(self, items: Iterable[WorkItem]) -> None:
        """Records waiting on another's run go back to the queue (their leader was dropped)."""
        for item in items:
            state = item.state
            state.in_flight -= 1
            state.queued += 1
            item.running = False

    def finished(self, items: Sequence[WorkItem]) -> None:
        """Running records whose outputs Kafka acknowledged."""
        nbytes = 0
        for item in items:
            state = item.state
            state.in_flight -= 1
            nbytes += item.size
            if state.forgotten:
                self.tracked -= 1  # never to be committed: its capacity is free now
                if not state.in_flight:
                    self._orphans.discard(state)
            else:
                state.tracker.done(item.offset)
        self.active -= len(items)
        self.nbytes -= nbytes
        self.capacity_changed.set()
        self.work_finished.set()
        self._levels()

    def dropped(self, items: Sequence[WorkItem]) -> None:
        """Records that will get no output here (their partition was revoked): redelivered later."""
        nbytes = 0
        for item in items:
            state = item.state
            if item.running:
                state.in_flight -= 1
            else:
                state.queued -= 1
            nbytes += item.size
        self.active -= len(items)
        self.nbytes -= nbytes
        self.capacity_changed.set()
        self.work_finished.set()
        self._levels()

    # ------------------------------------------------------------------------- commits

    def commit_points(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, tuple[PartitionState, CommitPoint]]:
        """For each given (default: every) assigned partition whose finished prefix moved, what to commit."""
        chosen = self._states.keys() if partitions is None else partitions
        points = {}
        for tp in chosen:
            state = self._states.get(tp)
            if state is None:
                continue
            point = state.tracker.commit_point()
            if point is not None:
                points[tp] = (state, point)
        return points

    def committed(self, points: Mapping[TopicPartition, tuple[PartitionState, CommitPoint]]) -> int:
        """Those commit points were committed; return how many records that released."""
        released = 0
        for state, point in points.values():
            if not state.forgotten:  # a forgotten state's records were released when it was forgotten
                released += state.tracker.committed(point)
        if released:
            self.tracked -= released
            self.capacity_changed.set()
            self._levels()
        return released

    # ------------------------------------------------------------------------- waiting

    def busy(self, states: Iterable[PartitionState] | None = None) -> bool:
        """Whether any record is active (or, for the given states, running)."""
        if states is None:
            return self.active > 0
        return any(s.in_flight > 0 for s in states)

    async def wait_idle(self, states: Sequence[PartitionState] | None, timeout_s: float) -> bool:
        """Wait until :meth:`busy` is false; return False when ``timeout_s`` passed first."""
        deadline = self._clock() + timeout_s
        event = self.work_finished
        while self.busy(states):
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            event.clear()
            if self.busy(states):
                try:
                    async with asyncio.timeout(remaining):
                        await event.wait()
                except TimeoutError:
                    pass
        return True

    # ------------------------------------------------------------------------- invariants

    def check(self) -> None:
        """Raise AssertionError when an invariant does not hold (for tests and debugging)."""
        live = self._states.values()
        orphans_running = sum(s.in_flight for s in self._orphans)
        active = sum(s.queued + s.in_flight for s in live) + orphans_running
        tracked = sum(s.tracker.held() for s in live) + orphans_running
        problems = []
        if not 0 <= self.active <= self.tracked:
            problems.append(f"0 <= active ({self.active}) <= tracked ({self.tracked})")
        if self.active != active:
            problems.append(f"active {self.active} != queued + running {active}")
        if self.tracked != tracked:
            problems.append(f"tracked {self.tracked} != held {tracked}")
        if self.nbytes < 0 or (self.active == 0 and self.nbytes != 0):
            problems.append(f"nbytes {self.nbytes} with active {self.active}")
        if any(s.queued < 0 or s.in_flight < 0 for s in live):
            problems.append("a partition counter below zero")
        if problems:
            raise AssertionError("ledger invariants broken: " + "; ".join(problems))
