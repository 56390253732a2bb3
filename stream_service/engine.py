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
from stream_service.ownership import Ownership
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
from stream_service.pipeline.work import WorkItem

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
        self._ownership = Ownership(parts, self._log)

    # ------------------------------------------------------------------ partitions

    async def assign(self, partitions: Collection[TopicPartition]) -> None:
        """Take partitions on, with fresh state (no pause, buffer or gate survives a rebalance)."""
        await self._ownership.assign(partitions)

    async def revoke(self, partitions: Collection[TopicPartition], timeout_s: float) -> bool:
        """Hand partitions over: stop admitting, wait up to ``timeout_s``, commit, forget. False
        when running work did not finish in time (it is redelivered)."""
        return await self._ownership.revoke(partitions, timeout_s)

    # ------------------------------------------------------------------ the flow

    def intake(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """One fetch from the poll loop: admit it, answer what can be answered, queue the rest."""
        self._p.metrics.consumed_total.inc(sum(map(len, batch.values())))
        self._ready(self._p.admission.take(batch, self._ownership.reset))

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
            p.scheduler.processed(items)  # tenant slots bound processing, not publishing
            p.report.executed(outcomes, p.sizer.record(len(items), p.clock() - started))
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
