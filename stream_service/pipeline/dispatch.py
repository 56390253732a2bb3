"""Dispatch: close micro-batches (size, bytes or linger), take them fairly under the limits, launch them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from stream_service.observability.metrics import Metrics
from stream_service.pipeline.batch import BatchPolicy, BatchSizer
from stream_service.pipeline.execute import Executor
from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.schedule import FairScheduler
from stream_service.pipeline.work import WorkItem

LIMITED_RECHECK_S = 0.05  # re-check limits this often when the scheduler gave no hint


class Dispatcher:
    """Turns the scheduler's waiting requests into batches for the executor.

    Guarantees: a batch is launched when it reaches the batch-size target (adapted by
    :class:`BatchSizer`, capped by the executor's ``max_batch``), its bytes bound, or ``linger``
    after its first request became ready, whichever comes first; never more requests than the
    executor has free slots; never beyond the token buckets (it waits for tokens without
    blocking the loop). While draining, linger is skipped so the tail goes out at once.
    """

    def __init__(
        self,
        scheduler: FairScheduler,
        sizer: BatchSizer,
        executor: Executor,
        ledger: Ledger,
        policy: BatchPolicy,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.scheduler = scheduler
        self.sizer = sizer
        self.executor = executor
        self._ledger = ledger
        self.policy = policy
        self.metrics = metrics
        self._clock = clock
        self._work_ready = asyncio.Event()
        self._batch_full = asyncio.Event()
        self._first_ready_at: float | None = None
        self.draining = False

    def push(self, item: WorkItem) -> None:
        """Queue a request that may run (its key gate let it through)."""
        scheduler = self.scheduler
        item.scheduled = True
        if scheduler.size == 0:
            self._first_ready_at = self._clock()
        scheduler.push(item)
        if not self._work_ready.is_set():
            self._work_ready.set()
        if scheduler.size >= self.sizer.size and not self._batch_full.is_set():
            self._batch_full.set()

    def drain(self) -> None:
        """From now on, launch what is waiting without lingering."""
        self.draining = True
        self._work_ready.set()

    async def run(self, launch: Callable[[list[WorkItem]], None]) -> None:
        """Close and launch batches until cancelled; ``launch`` runs one (it must not block)."""
        policy = self.policy
        scheduler = self.scheduler
        executor = self.executor
        clock = self._clock
        while True:
            if scheduler.size == 0:
                self._work_ready.clear()
                await self._work_ready.wait()
                continue
            target = min(self.sizer.size, executor.max_batch())
            if scheduler.size < target and policy.linger_s > 0 and not self.draining:
                first = self._first_ready_at if self._first_ready_at is not None else clock()
                remaining = first + policy.linger_s - clock()
                if remaining > 0:
                    self._batch_full.clear()
                    if scheduler.size < target:
                        await wait_event(self._batch_full, remaining)
            free = executor.free()
            want = min(target, scheduler.size)
            if 0 <= free < want and not self.draining:
                # Let running work free more slots first (up to linger): otherwise every finished
                # request starts a batch of one, and per-batch overhead eats the loop.
                await self._wait_capacity(want, policy.linger_s)
                free = executor.free()
            if free <= 0:
                executor.capacity_changed.clear()
                await executor.capacity_changed.wait()
                continue
            started_wait = clock()
            items, wait_s = scheduler.take(min(target, free), policy.max_bytes)
            if not items:
                # Limits hold the waiting work back: wait for tokens, or for a slot to free up.
                finished = self._ledger.work_finished
                finished.clear()
                await wait_event(finished, wait_s if wait_s > 0 else LIMITED_RECHECK_S)
                self.metrics.limiter_wait_seconds_total.inc(clock() - started_wait)
                continue
            self._first_ready_at = clock() if scheduler.size else None
            self._batch_full.clear()
            self._ledger.started(items)
            executor.acquire(len(items))
            launch(items)

    async def _wait_capacity(self, want: int, timeout_s: float) -> None:
        deadline = self._clock() + timeout_s
        changed = self.executor.capacity_changed
        while self.executor.free() < want:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            changed.clear()
            await wait_event(changed, remaining)


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for ``event``, at most ``timeout_s`` seconds (a timeout is not an error here)."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        pass
