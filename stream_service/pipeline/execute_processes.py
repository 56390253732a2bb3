"""Execute in processes: whole batches in worker processes, each loading the processor once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from stream_service.errors import ProcessingTimeout, ProcessorFailed, WorkerCrashed
from stream_service.messages import Request
from stream_service.pipeline.execute import AttemptResult, Contexts, Executor
from stream_service.pipeline.retry import RetryPolicy
from stream_service.processors.loader import ProcessorSpec, worker_call, worker_init


class ProcessExecutor(Executor):
    """Whole batches in ``workers`` single-process pools, each loading the processor once.

    One pool per worker, because a dying worker breaks its whole ``ProcessPoolExecutor``: this
    way a crash or a hang past ``executor.request_timeout_s`` costs only the batch on that worker. The
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
        self, requests: Sequence[Request], *, isolate: bool, ticket: list[int], contexts: Contexts = None
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
            async with asyncio.timeout(self.timeout_s):
                return list(await loop.run_in_executor(pool, worker_call, list(requests)))
        except TimeoutError:
            self._replace_pool(index, pool)
            timeout = (
                f"processor took longer than executor.request_timeout_s={self.timeout_s}; worker replaced"
            )
            return [ProcessingTimeout(timeout)] * len(requests)
        except BrokenProcessPool:
            self._replace_pool(index, pool)
            return [WorkerCrashed("worker process died; it was replaced")] * len(requests)
        except Exception as exc:  # noqa: BLE001 - the answers could not come back (cannot be pickled)
            error = exc
        finally:
            self._busy[index] = False
        if len(requests) > 1:  # find the request whose answer cannot come back: one at a time
            return await self._attempt(requests, isolate=True, ticket=ticket)
        return [
            ProcessorFailed(f"the worker's answer could not be returned: {type(error).__name__}: {error}")
        ]

    async def aclose(self) -> None:
        for pool in self._pools:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
