"""The engine: the pipeline steps, assembled and driven. It orchestrates; the steps keep the state.

    consume ──> admit (decode, quota, key gate) ──> coalesce (cache) ──> dispatch (fair, limited, batched)
       ^                                                                          │
       │ pause/resume                                                             v
    back-pressure <── ledger <── commit <── publish (acks) <── answer <── execute (retries)

Records are counted by the ledger from the moment they are fetched until their offsets are
committed; offsets are committed only behind acknowledged outputs. :mod:`stream_service.wiring`
builds the parts from the configuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import TopicPartition

from stream_service.observability.completion import CompletionReport
from stream_service.observability.metrics import Metrics
from stream_service.observability.tracing import NO_BATCH, BatchTrace, Tracing
from stream_service.pipeline.admit import Admission
from stream_service.pipeline.answer import Answers
from stream_service.pipeline.batch import BatchSizer
from stream_service.pipeline.coalesce import Coalescer, Route
from stream_service.pipeline.commit import CommitLoop
from stream_service.pipeline.consume import PollLoop
from stream_service.pipeline.dispatch import Dispatcher
from stream_service.pipeline.encode import OutRecord
from stream_service.pipeline.execute import Executor
from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.publish import Outlet
from stream_service.pipeline.schedule import FairScheduler
from stream_service.pipeline.work import PartitionState, WorkItem

Answered = list[tuple[WorkItem, OutRecord]]


@dataclass(frozen=True, slots=True)
class EngineParts:
    """The steps an engine drives, ready-made (see :func:`stream_service.wiring.build_engine`)."""

    ledger: Ledger
    poller: PollLoop
    admission: Admission
    coalescer: Coalescer
    answers: Answers
    scheduler: FairScheduler
    dispatcher: Dispatcher
    sizer: BatchSizer
    executor: Executor
    publisher: Outlet
    commits: CommitLoop
    report: CompletionReport
    metrics: Metrics
    tracing: Tracing
    clock: Callable[[], float]


class Engine:
    """Moves records from the input topic to the output topics, at least once.

    Guarantees:
    - every consumed record yields exactly one output (a Result or an ErrorRecord) before its
      offset can be committed;
    - in-flight work (consumed, not committed) stays within ``executor.max_in_flight`` records
      and about ``executor.max_in_flight_bytes``; beyond it, partitions pause;
    - ``ordering = key``: records with the same key run one after another in offset order;
    - partitions are taken on by :meth:`assign` (fresh state) and handed over by :meth:`revoke`
      (stop admitting, wait, commit, forget); work of a revoked partition that finishes late
      cannot touch the state of a later assignment.
    """

    def __init__(self, parts: EngineParts) -> None:
        self.parts = parts
        self.ledger = parts.ledger
        self.metrics = parts.metrics
        self._p = parts
        self._log = structlog.get_logger("stream_service.engine")
        self._tasks: asyncio.TaskGroup | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.drained: bool | None = None  # set when running() drained at its end
        parts.publisher.bind(replay=self._replay, on_lost=self._lost)

    # ------------------------------------------------------------------ partitions

    async def assign(self, partitions: Collection[TopicPartition]) -> None:
        """Take partitions on, with fresh state (no pause, buffer or gate survives a rebalance).

        Exactly once, nothing is fetched from them until their producers have fenced the
        previous owners, and then only from the offsets committed by then."""
        p = self._p
        p.poller.hold(partitions)
        states = p.ledger.open(partitions)
        p.poller.assigned(p.ledger.states.keys())
        p.metrics.rebalances_total.inc()
        p.metrics.assigned_partitions.set(len(p.ledger.states))
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
            self._log.warning(
                "rebalance.drain_timeout",
                timeout_s=timeout_s,
                in_flight=sum(s.in_flight for s in states),
                hint="unfinished work is redelivered; raise delivery.drain_timeout_s for fewer duplicates",
            )
        await p.commits.committer.commit(partitions)
        p.ledger.forget(partitions)
        await p.publisher.close(partitions)
        p.metrics.forget_partitions((tp.topic, tp.partition) for tp in partitions)
        p.metrics.assigned_partitions.set(len(p.ledger.states))
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

    def _reset(self, tp: TopicPartition, offset: int) -> PartitionState:
        """The partition's offsets went back (topic recreated, position reset): start it afresh."""
        old = self._p.ledger.states[tp]
        self._log.warning(
            "partition.offset_reset",
            topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            last_seen=old.tracker.last_added,
            hint="the partition's offsets went backwards (topic recreated?): continuing from the new offset",
        )
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

    async def _replay(self, tp: TopicPartition, offset: int | None) -> None:
        """A transaction failed: read ``tp`` again from ``offset`` (None: nothing was committed by
        us yet, so from where this assignment began reading)."""
        old = self._p.ledger.states.get(tp)
        if old is None:
            return
        if offset is None:
            offset = old.tracker.first_added
        self._renew(tp)
        await self._p.poller.rewind(tp, offset)

    def _lost(self, tp: TopicPartition) -> None:
        """Another instance owns ``tp`` now (we were fenced): fetch nothing more of it."""
        self._p.poller.hold([tp])

    # ------------------------------------------------------------------ the flow

    def intake(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """One fetch from the poll loop: admit it, answer what can be answered, queue the rest."""
        self._p.metrics.consumed_total.inc(sum(map(len, batch.values())))
        self._ready(self._p.admission.take(batch, self._reset))

    def _ready(self, items: Iterable[WorkItem]) -> None:
        """Items their key gate let through: answered at once, from the cache, after an identical
        request, or queued to run."""
        p = self._p
        answered: Answered = []
        following: list[WorkItem] = []
        for item in items:
            if item.answer is not None:
                answered.append((item, item.answer))
                continue
            route = p.coalescer.route(item, answered)
            if route is Route.RUN:
                p.dispatcher.push(item)
            elif route is Route.FOLLOWS:
                following.append(item)
        if answered or following:
            p.ledger.started([item for item, _ in answered] + following)
        if answered:
            self._spawn(self._publish_answered(answered))

    async def _run_batch(self, items: list[WorkItem]) -> None:
        p = self._p
        started = p.clock()
        with p.tracing.batch(items, per_request=p.executor.request_contexts) as trace:
            requests = [item.request for item in items]
            outcomes = await p.executor.run(requests, trace.contexts)  # type: ignore[arg-type]
            elapsed = p.clock() - started
            self._processed(items)
            p.metrics.batch_target_size.set(p.sizer.record(len(items), elapsed))
            p.metrics.batch_size.observe(len(items))
            p.metrics.processing_seconds.observe_many([o.seconds for o in outcomes])
            answers = p.coalescer
            records: list[OutRecord] = []
            for item, outcome in zip(items, outcomes, strict=True):
                records.append(p.answers.outcome(item, outcome))
                for follower in answers.resolve(item, outcome):
                    records.append(answers.answer(follower, outcome))
            await p.publisher.publish(
                records, lambda acked: self._complete(acked, p.clock() - started, trace)
            )

    async def _publish_answered(self, answered: Answered) -> None:
        await self._p.publisher.publish(
            [rec for _, rec in answered], lambda acked: self._complete(acked, None)
        )

    def _processed(self, items: list[WorkItem]) -> None:
        """The processor is done with ``items``: their tenants' in-flight slots are free again."""
        slots: dict[str, int] = {}
        for item in items:
            if item.scheduled:
                item.scheduled = False
                slots[item.tenant] = slots.get(item.tenant, 0) + 1
        for tenant, n in slots.items():
            self._p.scheduler.complete(tenant, n)

    def _complete(
        self, records: Sequence[OutRecord], batch_latency_s: float | None, trace: BatchTrace = NO_BATCH
    ) -> None:
        """``records`` are acknowledged (or, exactly once, discarded): account, report, end their
        request spans, open key gates, maybe commit. Called per group of acknowledgements, so an
        output waiting for an earlier one never holds its neighbours' key gates."""
        p = self._p
        items = [rec.item for rec in records]
        p.ledger.finished(items)
        p.report.completed(items, records, batch_latency_s=batch_latency_s, trace=trace.ids)
        p.tracing.finished(records)
        released: list[WorkItem] = []
        for item in items:
            if item.gated:
                nxt = p.admission.release(item)
                if nxt is not None:
                    released.append(nxt)
        if released:
            self._ready(released)
        p.commits.wanted()

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def running(self, tasks: asyncio.TaskGroup, *, drain_timeout_s: float) -> AsyncIterator[Engine]:
        """Run the engine's loops in ``tasks``; on leaving the block, drain (within
        ``drain_timeout_s``; the result is :attr:`drained`), then cancel what is left. Leaving by
        an exception skips the drain: unfinished work is redelivered, never lost."""
        p = self._p
        self._tasks = tasks
        loops = [
            tasks.create_task(p.poller.run(self.intake), name="poll"),
            tasks.create_task(p.dispatcher.run(self.launch), name="dispatch"),
            tasks.create_task(p.commits.run(), name="commit"),
        ]
        try:
            yield self
            self.drained = await self.drain(drain_timeout_s)
        finally:
            for task in loops:
                task.cancel()
            for task in list(self._running):
                task.cancel()  # after a drain timeout: abandoned, redelivered later

    async def drain(self, timeout_s: float) -> bool:
        """Stop consuming, finish everything consumed, and commit. Return False on timeout."""
        p = self._p
        p.poller.stop()
        p.dispatcher.drain()
        idle = await p.ledger.wait_idle(None, timeout_s)
        await p.commits.committer.commit()
        return idle

    def launch(self, items: list[WorkItem]) -> None:
        """Run one batch the dispatcher closed (the dispatcher's launch callback)."""
        self._spawn(self._run_batch(items))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run work as a task of the service's TaskGroup, remembered until it ends."""
        if self._tasks is None:
            coro.close()
            raise RuntimeError("the engine is not running: use `async with engine.running(tasks)`")
        task = self._tasks.create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
