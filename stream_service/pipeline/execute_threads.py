"""Execute on threads: whole batches of a sync processor on worker threads, hangs accounted for."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Sequence
from typing import Any

from stream_service.errors import ConfigError, ProcessingTimeout
from stream_service.messages import Request
from stream_service.pipeline.execute import AttemptResult, Contexts, Executor
from stream_service.pipeline.retry import RetryPolicy
from stream_service.processors.loader import LoadedProcessor


class ThreadExecutor(Executor):
    """Whole batches on ``workers`` threads (for sync processors, which must not block the loop).

    Guarantees: at most ``2 * workers`` batches are outstanding (one running and one queued per
    worker). An attempt that passes ``executor.request_timeout_s`` is answered with timeouts
    (and retried one request at a time); its thread cannot be stopped, so it runs on as a
    *hung* thread and its late answer is discarded. Up to ``workers`` hung threads are covered
    by spare threads, so capacity comes back at once; beyond that, each hung thread holds its
    share of the capacity until it returns (``executor.kind = process`` kills and replaces
    hung workers instead). :attr:`hung` counts them.
    Rejects: an async processor (``ConfigError``).
    """

    def __init__(self, processor: LoadedProcessor, retry: RetryPolicy, timeout_s: float, workers: int):
        super().__init__(retry, timeout_s)
        if processor.is_async:
            raise ConfigError(
                "invalid setting executor.kind = thread: the processor is async; use executor.kind = async"
            )
        self.processor = processor
        self.workers = workers
        self.hung = 0
        # ``workers`` threads for the work, as many spares for threads that hang
        self._pool = concurrent.futures.ThreadPoolExecutor(
            workers * 2, thread_name_prefix="stream-service-worker"
        )

    def _slots(self, n: int) -> int:
        return 1  # one batch per thread

    def free(self) -> int:
        unspared = max(0, self.hung - self.workers)  # hung threads no spare stands in for
        return (1 << 30) if self._running + unspared < self.workers * 2 else 0

    async def _attempt(
        self, requests: Sequence[Request], *, isolate: bool, ticket: list[int], contexts: Contexts = None
    ) -> list[AttemptResult]:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()  # a thread does not carry contextvars by itself
        work = self._pool.submit(ctx.run, self.processor.call_sync, list(requests))
        answer = asyncio.wrap_future(work)
        done, _ = await asyncio.wait({answer}, timeout=self.timeout_s)
        if done:
            results: list[AttemptResult] = answer.result()
            return results
        self.hung += 1
        answer.add_done_callback(_retrieve)  # a late exception must not be reported as unhandled
        work.add_done_callback(lambda _: _call_soon(loop, self._returned))
        timeout = (
            f"processor took longer than executor.request_timeout_s={self.timeout_s} (thread left running)"
        )
        return [ProcessingTimeout(timeout)] * len(requests)

    def _returned(self) -> None:
        """A hung thread returned at last: its capacity is free again."""
        self.hung -= 1
        self.capacity_changed.set()

    async def aclose(self) -> None:
        # Hung threads are not waited for: they may never return.
        await asyncio.to_thread(self._pool.shutdown, wait=self.hung == 0, cancel_futures=True)
        await self.processor.aclose()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any) -> None:
    """From a worker thread: run ``callback`` on ``loop``, unless the loop is gone already."""
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # the service stopped (its loop closed) while the thread hung
        pass
