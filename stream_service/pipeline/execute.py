"""Execute: run the processor over a batch of requests, with timeouts, retries and bounded concurrency.

Three kinds share one retry loop (:meth:`Executor.run`) and differ in how one attempt runs:

- ``async`` (here): async processors run as coroutines, at most ``concurrency`` requests at
  once; the built-in sync processors (echo, resonance: CPU-bound and bounded by the prompt
  limit) run inline on the event loop, one batch at a time (the adaptive batch size keeps a
  batch near its target time). A sync plugin, which may block or hang, never runs on the loop:
  with ``executor.kind = async`` it gets the thread executor;
- ``thread`` (:mod:`~stream_service.pipeline.execute_threads`): whole batches on worker threads;
- ``process`` (:mod:`~stream_service.pipeline.execute_processes`): whole batches in worker
  processes (one pickle round trip per batch, not per request).

Every attempt has one deadline, ``executor.request_timeout_s``, whatever the batch length. A
crash or hang takes its whole batch down, so its requests are retried one at a time: only the
request that causes it keeps failing.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from collections.abc import Sequence

from stream_service.errors import ProcessingTimeout, RequestError, WorkerCrashed, classify
from stream_service.messages import Request
from stream_service.pipeline.retry import RetryPolicy
from stream_service.processors.base import Output
from stream_service.processors.loader import LoadedProcessor

AttemptResult = Output | BaseException
Contexts = Sequence[contextvars.Context] | None
"""One context per request of a batch, to run it in (tracing's current span), or None."""

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
    :attr:`request_contexts` says whether :meth:`run` runs each request in its own task, in the
    context given for it (else the contexts are not used).
    """

    request_contexts = False

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
        self, requests: Sequence[Request], *, isolate: bool, ticket: list[int], contexts: Contexts = None
    ) -> list[AttemptResult]:
        """One attempt of every request. ``ticket[0]`` is the batch's still-held capacity; an
        executor may give slots back early (and decrement it) as requests finish."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release pools and processor resources."""

    async def warm_up(self) -> None:
        """Get ready before the first batch (start worker processes); nothing by default."""

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

    async def run(self, requests: Sequence[Request], contexts: Contexts = None) -> list[Outcome]:
        """Run a batch that was :meth:`acquire`-d; returns one outcome per request, in order.
        ``contexts`` (one per request) are the contexts to run them in, where each runs on its own."""
        ticket = [self._slots(len(requests))]
        try:
            return await self._run(requests, ticket, contexts)
        finally:
            self._give_back(ticket, ticket[0])

    async def _run(self, requests: Sequence[Request], ticket: list[int], contexts: Contexts) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(requests)
        seconds = [0.0] * len(requests)
        pending = list(range(len(requests)))
        attempt = 1
        isolate = False
        while pending:
            started = time.perf_counter()
            results = await self._attempt(
                [requests[i] for i in pending],
                isolate=isolate,
                ticket=ticket,
                contexts=None if contexts is None else [contexts[i] for i in pending],
            )
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
        self.request_contexts = processor.is_async and not processor.is_batch

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
        self, requests: Sequence[Request], *, isolate: bool, ticket: list[int], contexts: Contexts = None
    ) -> list[AttemptResult]:
        p = self.processor
        if not p.is_async:
            return p.call_sync(requests)
        if p.is_batch:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await p.call_async_batch(requests)
            except TimeoutError:
                timeout = f"batch processor took longer than executor.request_timeout_s={self.timeout_s}"
                return [ProcessingTimeout(timeout)] * len(requests)
            except Exception as exc:  # noqa: BLE001
                return [exc] * len(requests)
        # Every request of the attempt starts now, so one deadline serves them all: requests still
        # running when it passes are cancelled and answered with a timeout, the others keep theirs.
        # The attempt's own TaskGroup owns the per-request tasks (nested in the service's group):
        # a cancellation of the batch cancels them all; a late one is cancelled on its own.
        async with asyncio.TaskGroup() as group:
            if contexts is None:
                tasks = [group.create_task(self._one(r, ticket)) for r in requests]
            else:  # each request in its own context (tracing: its span is the current one)
                tasks = [
                    group.create_task(self._one(r, ticket), context=c)
                    for r, c in zip(requests, contexts, strict=True)
                ]
            _, late = await asyncio.wait(tasks, timeout=self.timeout_s)
            for task in late:
                task.cancel()
        timeout = f"processor took longer than executor.request_timeout_s={self.timeout_s}"
        return [ProcessingTimeout(timeout) if task.cancelled() else task.result() for task in tasks]

    async def aclose(self) -> None:
        await self.processor.aclose()
