"""Partition ownership: taking partitions on and handing them over, for the engine.

Every step keeps per-partition state (the ledger's trackers, the key gates, the scheduler's
queues, the coalescer's followers, the transactions); this is the one place that walks them
all when a partition comes, goes, starts again from new offsets, or is lost to another instance.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from structlog.typing import FilteringBoundLogger

from stream_service.observability import audit
from stream_service.pipeline.work import PartitionState

if TYPE_CHECKING:
    from stream_service.engine import EngineParts


class Ownership:
    """Assign, revoke, reset, replay and lose partitions across the engine's steps.

    Guarantees: an assigned partition starts with fresh state everywhere; a revoked one drops its
    waiting work (redelivered to the next owner), gets ``timeout_s`` for its running work, commits
    what finished and is forgotten; work of a partition's old state that finishes late cannot
    touch a later state of it.
    """

    def __init__(self, parts: EngineParts, log: FilteringBoundLogger) -> None:
        self._p = parts
        self._log = log
        parts.publisher.bind(replay=self.replay, on_lost=self.lost)

    async def assign(self, partitions: Collection[TopicPartition]) -> None:
        """Take partitions on, with fresh state (no pause, buffer or gate survives a rebalance).

        Exactly once, nothing is fetched from them until their producers have fenced the
        previous owners, and then only from the offsets committed by then."""
        p = self._p
        p.poller.hold(partitions)
        states = p.ledger.open(partitions)
        p.poller.assigned(p.ledger.states.keys())
        p.metrics.partitions_changed(len(p.ledger.states), assigned=True)
        await p.publisher.prepare(zip(partitions, states, strict=True))
        if p.publisher.fences:
            await p.poller.from_committed(partitions)
        p.poller.release(partitions)

    async def revoke(self, partitions: Collection[TopicPartition], timeout_s: float) -> bool:
        """Hand partitions over: drop their waiting work (redelivered to the next owner), wait up
        to ``timeout_s`` for their running work, commit what finished, forget them. Returns
        False when running work did not finish in time (it is redelivered too)."""
        p = self._p
        states = self._stop_admitting(partitions)
        drained = await p.ledger.wait_idle(states, timeout_s)
        if not drained:
            audit.drain_timeout(self._log, timeout_s, sum(s.in_flight for s in states))
        await p.commits.committer.commit(partitions)
        p.ledger.forget(partitions)
        await p.publisher.close(partitions)
        p.metrics.partitions_changed(len(p.ledger.states), revoked=partitions)
        return drained

    def _stop_admitting(self, partitions: Collection[TopicPartition]) -> list[PartitionState]:
        """Revoke in the ledger and drop the partitions' waiting work; return their states."""
        p = self._p
        states = p.ledger.revoke(partitions)
        if states:
            dropped = p.scheduler.remove_if(lambda item: item.state.revoked)
            dropped.extend(p.admission.drop(states))
            handover = p.coalescer.drop(dropped)
            p.ledger.dropped(dropped + handover.dropped)
            p.ledger.requeued(handover.leaders)
            for leader in handover.leaders:
                p.dispatcher.push(leader)
        return states

    def reset(self, tp: TopicPartition, offset: int) -> PartitionState:
        """The partition's offsets went back (topic recreated, position reset): start it afresh."""
        last = self._p.ledger.states[tp].tracker.last_added
        self._log.warning("partition.offset_reset", partition=str(tp), offset=offset, last_seen=last)
        return self._renew(tp)

    def _renew(self, tp: TopicPartition) -> PartitionState:
        """A fresh state for ``tp``: waiting work of the old one is dropped and its running work
        finishes unaccounted; nothing of the old state is committed any more."""
        p = self._p
        self._stop_admitting([tp])
        p.ledger.forget([tp])
        (state,) = p.ledger.open([tp])
        p.publisher.rebind(tp, state)
        return state

    async def replay(self, tp: TopicPartition, offset: int | None) -> None:
        """A transaction failed: read ``tp`` again from ``offset`` (None: nothing was committed by
        us yet, so from where this assignment began reading)."""
        old = self._p.ledger.states.get(tp)
        if old is None:
            return
        if offset is None:
            offset = old.tracker.first_added
        self._renew(tp)
        await self._p.poller.rewind(tp, offset)

    def lost(self, tp: TopicPartition) -> None:
        """Another instance owns ``tp`` now (we were fenced): fetch nothing more of it."""
        self._p.poller.hold([tp])
