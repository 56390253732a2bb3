"""Execute: run the processor over a batch of requests, with timeouts, retries and bounded concurrency.

Three kinds share one retry loop (:meth:`Executor.run`) and differ in how one attempt runs:

- ``async``: async processors run as coroutines, at most ``concurrency`` requests at once; a
  sync processor runs inline on the event loop, one batch at a time (the adaptive batch size
  keeps a batch near its target time, so the poll loop is never starved for long);
- ``thread``: whole batches run in a thread pool of ``workers`` threads;
- ``process``: whole batches go to a process pool of ``workers`` processes (one pickle round
  trip per batch, not per request). A worker that dies is replaced and its batch retried one
  request at a time, so one poison request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import multiprocessing
import random
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from stream_service.errors import ConfigError, ProcessingTimeout, RequestError, WorkerCrashed, classify
from stream_service.messages import Request
from stream_service.pipeline.retry import RetryPolicy
from stream_service.processors.base import Output
from stream_service.processors.loader import LoadedProcessor, ProcessorSpec, worker_call, worker_init

AttemptResult = Output | BaseException

ASYNC_BATCHES_IN_FLIGHT = 4  # batches sharing the async concurrency limit at once


class Outcome:
    """The final result of one request: an output or an error, after ``attempts`` tries."""

    __slots__ = ("output", "error", "attempts", "seconds")

    def __init__(self, output: Output | None, error: RequestError | None, attempts: int, seconds: float):
        self.output = output
        self.error = error
        self.attempts = attempts
        self.seconds = seconds


class Executor:
    """Runs batches with retries. Subclasses implement one attempt.

    Guarantees: :meth:`run` returns exactly one :class:`Outcome` per request, in order, and never
    raises for a processor failure (only ``CancelledError`` passes through). Retriable errors
    are retried up to ``retry.max_attempts`` with jittered backoff. :meth:`free` tells the
    dispatcher how many more requests may start now; ``capacity_changed`` is set when a slot frees.
    """

    def __init__(self, retry: RetryPolicy, timeout_s: float, *, rng: random.Random | None = None) -> None:
        self.retry = retry
        self.timeout_s = timeout_s
        self.capacity_changed = asyncio.Event()
        self._rng = rng or random.Random()
        self._running = 0

    def free(self) -> int:
        raise NotImplementedError

    def max_batch(self) -> int:
        """The largest batch worth dispatching at once (the batch size target may be larger)."""
        return 1 << 30

    async def _attempt(
        self, requests: Sequence[Request], *, isolate: bool, ticket: list[int]
    ) -> list[AttemptResult]:
        """One attempt of every request. ``ticket[0]`` is the batch's still-held capacity; an
        executor may give slots back early (and decrement it) as requests finish."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release pools and processor resources."""

    def acquire(self, n: int) -> None:
        """Claim capacity for a batch of ``n`` requests, at dispatch time (before it runs);
        :meth:`run` gives it back."""
        self._running += self._slots(n)

    def _give_back(self, ticket: list[int], n: int) -> None:
        n = min(n, ticket[0])
        if n > 0:
            ticket[0] -= n
            self._running -= n
            self.capacity_changed.set()

    def _slots(self, n: int) -> int:
        return n

    async def run(self, requests: Sequence[Request]) -> list[Outcome]:
        """Run a batch that was :meth:`acquire`-d; returns one outcome per request, in order."""
        ticket = [self._slots(len(requests))]
        try:
            return await self._run(requests, ticket)
        finally:
            self._give_back(ticket, ticket[0])

    async def _run(self, requests: Sequence[Request], ticket: list[int]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(requests)
        seconds = [0.0] * len(requests)
        pending = list(range(len(requests)))
        attempt = 1
        isolate = False
        while pending:
            started = time.perf_counter()
            results = await self._attempt([requests[i] for i in pending], isolate=isolate, ticket=ticket)
            share = (time.perf_counter() - started) / len(pending)
            retry: list[int] = []
            hint: float | None = None
            isolate = False
            for i, result in zip(pending, results, strict=True):
                seconds[i] += share
                if isinstance(result, Output):
                    outcomes[i] = Outcome(result, None, attempt, seconds[i])
                    continue
                error = classify(result)
                if error.retriable and attempt < self.retry.max_attempts:
                    retry.append(i)
                    after = getattr(error, "retry_after_s", None)
                    if after is not None:
                        hint = after if hint is None else max(hint, after)
                    # A crash or hang takes its whole batch down: retry one by one, so only the
                    # request that causes it keeps failing.
                    isolate = isolate or isinstance(error, WorkerCrashed | ProcessingTimeout)
                else:
                    outcomes[i] = Outcome(None, error, attempt, seconds[i])
            if retry:
                # A backoff between attempts, not synchronisation: nothing signals "retry now".
                await asyncio.sleep(self.retry.backoff_s(attempt, self._rng, hint))
                attempt += 1
            pending = retry
        return [o for o in outcomes if o is not None]


class AsyncExecutor(Executor):
    """Coroutines on the event loop; at most ``concurrency`` requests of an async processor at once."""

    def __init__(self, processor: LoadedProcessor, retry: RetryPolicy, timeout_s: float, concurrency: int):
        super().__init__(retry, timeout_s)
        self.processor = processor
        self.concurrency = concurrency

    def free(self) -> int:
        if not self.processor.is_async:
            # Inline sync work: one batch at a time, so the loop gets back control between batches.
            return 1 << 30 if self._running == 0 else 0
        return self.concurrency - self._running

    def max_batch(self) -> int:
        if self.processor.is_async and not self.processor.is_batch:
            # Several smaller batches keep the concurrency limit busy and publish sooner.
            return max(1, self.concurrency // ASYNC_BATCHES_IN_FLIGHT)
        return 1 << 30

    async def _one(self, request: Request, ticket: list[int]) -> AttemptResult:
        """One request; the caller enforces its deadline (one timer per batch, not per request)."""
        try:
            return await self.processor.call_async(request)
        except Exception as exc:  # noqa: BLE001 - every processor failure becomes an outcome
            return exc
        finally:
            # Free this request's slot now, not when the batch's slowest request ends. (A retry
            # then runs on top of the limit; retries are rare and bounded by max_attempts.)
            self._give_back(ticket, 1)

    async def _attempt(
        self, requests: Sequence[Request], *, isolate: bool, ticket: list[int]
    ) -> list[AttemptResult]:
        p = self.processor
        if not p.is_async:
            return p.call_sync(requests)
        if p.is_batch:
            try:
                async with asyncio.timeout(self.timeout_s * max(1, len(requests))):
                    return await p.call_async_batch(requests)
            except TimeoutError:
                return [ProcessingTimeout("batch processor timed out")] * len(requests)
            except Exception as exc:  # noqa: BLE001
                return [exc] * len(requests)
        # Every request of the attempt starts now, so one deadline serves them all: requests still
        # running when it passes are cancelled and answered with a timeout, the others keep theirs.
        # The attempt's own TaskGroup owns the per-request tasks (nested in the service's group):
        # a cancellation of the batch cancels them all; a late one is cancelled on its own.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._one(r, ticket)) for r in requests]
            _, late = await asyncio.wait(tasks, timeout=self.timeout_s)
            for task in late:
                task.cancel()
        timeout = f"processor took longer than executor.request_timeout_s={self.timeout_s}"
        return [ProcessingTimeout(timeout) if task.cancelled() else task.result() for task in tasks]

    async def aclose(self) -> None:
        await self.processor.aclose()


class ThreadExecutor(Executor):
    """Whole batches in a pool of ``workers`` threads (for sync processors that release the GIL)."""

    def __init__(self, processor: LoadedProcessor, retry: RetryPolicy, timeout_s: float, workers: int):
        super().__init__(retry, timeout_s)
        if processor.is_async:
            raise ConfigError(
                "invalid setting executor.kind = thread: the processor is async; use executor.kind = async"
            )
        self.processor = processor
        self.workers = workers
        self._pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="stream-service-worker"
        )

    def _slots(self, n: int) -> int:
        return 1  # one batch per thread

    def free(self) -> int:
        return (1 << 30) if self._running < self.workers * 2 else 0

    async def _attempt(
        self, requests: Sequence[Request], *, isolate: bool, ticket: list[int]
    ) -> list[AttemptResult]:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()  # run_in_executor does not carry contextvars by itself
        future = loop.run_in_executor(self._pool, ctx.run, self.processor.call_sync, list(requests))
        try:
            async with asyncio.timeout(self.timeout_s * max(1, len(requests))):
                return await future
        except TimeoutError:
            # A thread cannot be stopped; its late answer is discarded.
            return [ProcessingTimeout("batch exceeded its time budget in the thread pool")] * len(requests)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        await self.processor.aclose()


class ProcessExecutor(Executor):
    """Whole batches in ``workers`` single-process pools, each loading the processor once.

    One pool per worker, because a dying worker breaks its whole ``ProcessPoolExecutor``: this
    way a crash or a hang past the batch's time budget costs only the batch on that worker. The
    broken pool is replaced and the batch retried one request at a time, so only the request
    that causes the failure keeps failing.
    """

    def __init__(self, spec: ProcessorSpec, retry: RetryPolicy, timeout_s: float, workers: int):
        super().__init__(retry, timeout_s)
        self.spec = spec
        self.workers = workers
        self._pools = [self._new_pool() for _ in range(workers)]
        self._busy = [False] * workers
        self._cold = [True] * workers  # not started yet: its start-up must not count against a batch

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        # spawn: a fork of a process running an event loop and client sockets is not safe.
        ctx = multiprocessing.get_context("spawn")
        return concurrent.futures.ProcessPoolExecutor(
            1, mp_context=ctx, initializer=worker_init, initargs=(self.spec,)
        )

    def _slots(self, n: int) -> int:
        return 1

    def free(self) -> int:
        return (1 << 30) if self._running < self.workers else 0

    def _replace_pool(self, index: int, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._pools[index] is not pool:
            return  # already replaced
        self._pools[index] = self._new_pool()
        self._cold[index] = True
        processes: dict[Any, Any] = getattr(pool, "_processes", None) or {}
        for proc in list(processes.values()):  # the stdlib offers no public way to stop a hung worker
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def warm_up(self) -> None:
        """Start the workers (and load the processor in each) before the first batch arrives."""
        await asyncio.gather(*(self._warm(i) for i in range(self.workers)))

    async def _warm(self, index: int) -> None:
        """Spawn worker ``index`` and load the processor in it, outside any batch's time budget."""
        if self._cold[index]:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pools[index], worker_call, [])
            self._cold[index] = False

    async def _attempt(
        self, requests: Sequence[Request], *, isolate: bool, ticket: list[int]
    ) -> list[AttemptResult]:
        if isolate and len(requests) > 1:
            results: list[AttemptResult] = []
            for request in requests:  # one at a time: a poison request must not take others down
                results.extend(await self._attempt([request], isolate=False, ticket=ticket))
            return results
        index = self._busy.index(False) if False in self._busy else 0
        self._busy[index] = True
        loop = asyncio.get_running_loop()
        pool = self._pools[index]
        try:
            await self._warm(index)
            pool = self._pools[index]
            async with asyncio.timeout(self.timeout_s * max(1, len(requests))):
                return list(await loop.run_in_executor(pool, worker_call, list(requests)))
        except TimeoutError:
            self._replace_pool(index, pool)
            return [ProcessingTimeout("batch exceeded its time budget; worker replaced")] * len(requests)
        except BrokenProcessPool:
            self._replace_pool(index, pool)
            return [WorkerCrashed("worker process died; it was replaced")] * len(requests)
        finally:
            self._busy[index] = False

    async def aclose(self) -> None:
        for pool in self._pools:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def build_executor(
    kind: str,
    *,
    processor: LoadedProcessor,
    spec: ProcessorSpec,
    retry: RetryPolicy,
    timeout_s: float,
    concurrency: int,
    workers: int,
) -> Executor:
    """The executor named by ``executor.kind``."""
    if kind == "async":
        return AsyncExecutor(processor, retry, timeout_s, concurrency)
    if kind == "thread":
        return ThreadExecutor(processor, retry, timeout_s, workers)
    if kind == "process":
        return ProcessExecutor(spec, retry, timeout_s, workers)
    raise ConfigError(f"invalid setting executor.kind = {kind!r}: expected async, thread or process")
