"""Tests for stream_service.pipeline.execute: retries, timeouts, capacity and crash isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from stream_service.errors import (
    ConfigError,
    InvalidRequest,
    ProcessingTimeout,
    RateLimited,
    RetriableError,
    UpstreamUnavailable,
)
from stream_service.messages import Request
from stream_service.pipeline.execute import AsyncExecutor, Executor
from stream_service.pipeline.execute_processes import ProcessExecutor
from stream_service.pipeline.execute_threads import ThreadExecutor
from stream_service.pipeline.retry import RetryPolicy
from stream_service.processors.base import Output
from stream_service.processors.loader import ProcessorSpec, load_processor
from stream_service.wiring import build_executor
from tests.fakes import Behaviour, FakeProcessor
from tests.fixtures.crashy import CRASH_PROMPT, HANG_PROMPT, LOAD_S

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False)


def requests(*prompts: str) -> list[Request]:
    return [Request(id=f"r{i}", prompt=p) for i, p in enumerate(prompts)]


def echo(request: Request, attempt: int) -> object:
    return request.prompt


def fail_first(n: int, exc: Callable[[], Exception]) -> Behaviour:
    def behaviour(request: Request, attempt: int) -> object:
        if request.prompt.startswith("flaky") and attempt <= n:
            raise exc()
        return request.prompt

    return behaviour


@pytest.fixture(params=[pytest.param(True, id="async processor"), pytest.param(False, id="sync processor")])
def is_async(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_retriable_failure_is_retried_until_it_succeeds(is_async: bool) -> None:
    """A request failing retriably twice succeeds on its third attempt, reported with attempts=3."""
    processor = FakeProcessor(fail_first(2, lambda: UpstreamUnavailable("down")), is_async=is_async)
    executor = AsyncExecutor(processor, FAST_RETRY, timeout_s=5.0, concurrency=10)  # type: ignore[arg-type]
    outcomes = await executor.run(requests("ok", "flaky"))
    assert [o.output.content if o.output else None for o in outcomes] == ["ok", "flaky"]
    assert [o.attempts for o in outcomes] == [1, 3]
    assert processor.calls == {"r0": 1, "r1": 3}


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        pytest.param(lambda: UpstreamUnavailable("down"), "connection", id="connection"),
        pytest.param(lambda: RateLimited("429"), "rate_limit", id="rate limited"),
        pytest.param(lambda: RetriableError("try again"), "unknown", id="plugin asks for a retry"),
        pytest.param(lambda: ConnectionResetError("reset"), "connection", id="builtin connection error"),
    ],
)
async def test_retriable_failure_becomes_an_error_after_max_attempts(
    is_async: bool, exc: Callable[[], Exception], error_type: str
) -> None:
    """A request that keeps failing retriably ends as an error after max_attempts, with that count."""
    processor = FakeProcessor(fail_first(100, exc), is_async=is_async)
    executor = AsyncExecutor(processor, FAST_RETRY, timeout_s=5.0, concurrency=10)  # type: ignore[arg-type]
    (outcome,) = await executor.run(requests("flaky"))
    assert outcome.output is None
    assert outcome.error is not None
    assert outcome.error.error_type == error_type
    assert outcome.attempts == FAST_RETRY.max_attempts
    assert processor.calls == {"r0": FAST_RETRY.max_attempts}


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        pytest.param(lambda: ValueError("bad"), "unknown", id="plain exception"),
        pytest.param(lambda: InvalidRequest("bad input"), "validation", id="invalid request"),
        pytest.param(lambda: MemoryError(), "memory", id="out of memory"),
    ],
)
async def test_non_retriable_failure_is_not_retried(
    is_async: bool, exc: Callable[[], Exception], error_type: str
) -> None:
    """A non-retriable failure becomes an error after one attempt; its neighbours are unaffected."""
    processor = FakeProcessor(fail_first(100, exc), is_async=is_async)
    executor = AsyncExecutor(processor, FAST_RETRY, timeout_s=5.0, concurrency=10)  # type: ignore[arg-type]
    outcomes = await executor.run(requests("a", "flaky", "b"))
    assert [o.attempts for o in outcomes] == [1, 1, 1]
    assert outcomes[1].error is not None and outcomes[1].error.error_type == error_type
    assert [o.output.content for o in (outcomes[0], outcomes[2]) if o.output] == ["a", "b"]
    assert processor.calls["r1"] == 1


async def test_async_timeout_becomes_a_timeout_error() -> None:
    """An async request exceeding request_timeout_s ends with error_type timeout; its neighbours succeed."""
    never = asyncio.Event()

    def behaviour(request: Request, attempt: int) -> object:
        if request.prompt == "hang":

            async def hang() -> str:
                await never.wait()
                return "unreachable"

            return hang()
        return request.prompt

    processor = FakeProcessor(behaviour)
    retry = RetryPolicy(max_attempts=2, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False)
    executor = AsyncExecutor(processor, retry, timeout_s=0.05, concurrency=10)  # type: ignore[arg-type]
    outcomes = await executor.run(requests("ok", "hang"))
    assert outcomes[0].output is not None
    error = outcomes[1].error
    assert isinstance(error, ProcessingTimeout)
    assert error.error_type == "timeout"
    assert "executor.request_timeout_s=0.05" in str(error)
    assert outcomes[1].attempts == 2, "a timeout is retriable"


async def test_one_outcome_per_request_in_order() -> None:
    """run() returns exactly one outcome per request, in request order, whatever fails where."""
    prompts = [f"flaky{i}" if i % 3 == 0 else f"bad{i}" if i % 3 == 1 else f"ok{i}" for i in range(30)]

    def behaviour(request: Request, attempt: int) -> object:
        if request.prompt.startswith("flaky") and attempt == 1:
            raise UpstreamUnavailable("blip")
        if request.prompt.startswith("bad"):
            raise ValueError(request.prompt)
        return request.prompt

    executor = AsyncExecutor(FakeProcessor(behaviour), FAST_RETRY, 5.0, 100)  # type: ignore[arg-type]
    outcomes = await executor.run(requests(*prompts))
    assert len(outcomes) == len(prompts)
    for prompt, outcome in zip(prompts, outcomes, strict=True):
        if prompt.startswith("bad"):
            assert outcome.error is not None and prompt in str(outcome.error)
        else:
            assert outcome.output is not None and outcome.output.content == prompt
            assert outcome.attempts == (2 if prompt.startswith("flaky") else 1)


async def test_async_concurrency_bound_is_tracked_by_free() -> None:
    """free() is concurrency minus the requests acquired; run() gives them back and signals."""
    processor = FakeProcessor(echo)
    executor = AsyncExecutor(processor, FAST_RETRY, timeout_s=5.0, concurrency=4)  # type: ignore[arg-type]
    assert executor.free() == 4
    executor.acquire(3)
    assert executor.free() == 1
    assert not executor.capacity_changed.is_set()
    batch = requests(*"abc")
    await executor.run(batch)
    assert executor.free() == 4
    assert executor.capacity_changed.is_set()
    assert processor.max_running <= 3


async def test_sync_processor_on_the_loop_runs_one_batch_at_a_time() -> None:
    """With a sync processor, the async executor admits a whole batch, then nothing until it has run."""
    executor = AsyncExecutor(FakeProcessor(echo, is_async=False), FAST_RETRY, 5.0, 4)  # type: ignore[arg-type]
    assert executor.free() > 1000
    executor.acquire(2)
    assert executor.free() == 0
    await executor.run(requests("a", "b"))
    assert executor.free() > 1000


async def test_async_batch_processor_gets_the_whole_batch() -> None:
    """An async batch processor is called once per attempt with all pending requests."""
    seen: list[int] = []

    class BatchProcessor(FakeProcessor):
        async def call_async_batch(self, requests: Sequence[Request]) -> list[Output | BaseException]:
            seen.append(len(requests))
            return await super().call_async_batch(requests)

    processor = BatchProcessor(fail_first(1, lambda: UpstreamUnavailable("x")), is_batch=True)
    executor = AsyncExecutor(processor, FAST_RETRY, 5.0, 10)  # type: ignore[arg-type]
    outcomes = await executor.run(requests("a", "flaky", "b", "flaky2"))
    assert seen == [4, 2], "the retry carries only the failed requests"
    assert all(o.output is not None for o in outcomes)


async def test_close_closes_the_processor() -> None:
    """aclose() releases the processor's resources."""
    processor = FakeProcessor(echo)
    await AsyncExecutor(processor, FAST_RETRY, 5.0, 1).aclose()  # type: ignore[arg-type]
    assert processor.closed


async def test_thread_executor_runs_batches_in_its_pool() -> None:
    """The thread executor runs a sync processor in its worker threads and retries like the others."""
    processor = FakeProcessor(fail_first(1, lambda: UpstreamUnavailable("x")), is_async=False)
    executor = ThreadExecutor(processor, FAST_RETRY, timeout_s=5.0, workers=2)  # type: ignore[arg-type]
    try:
        assert executor.free() > 0
        for _ in range(4):
            executor.acquire(100)  # one slot per batch, whatever its size
        assert executor.free() == 0, "two batches per worker at most"
        outcomes = await executor.run(requests("a", "flaky"))  # gives back one batch's slot
        assert executor.free() > 0
        assert [o.attempts for o in outcomes] == [1, 2]
        assert all(name.startswith("stream-service-worker") for name in processor.threads)
    finally:
        await executor.aclose()
    assert processor.closed


def test_thread_executor_rejects_an_async_processor() -> None:
    """executor.kind = thread with an async processor is a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match="executor.kind = thread"):
        ThreadExecutor(FakeProcessor(echo), FAST_RETRY, 5.0, 1)  # type: ignore[arg-type]


def test_build_executor_rejects_an_unknown_kind() -> None:
    """An unknown executor.kind raises ConfigError listing the allowed kinds."""
    processor = FakeProcessor(echo)
    with pytest.raises(ConfigError, match="async, thread or process"):
        build_executor(
            "fibers",
            processor=processor,  # type: ignore[arg-type]
            spec=ProcessorSpec(name="echo"),
            retry=FAST_RETRY,
            timeout_s=1.0,
            concurrency=1,
            workers=1,
        )


@pytest.mark.parametrize(
    ("kind", "cls"),
    [pytest.param("async", AsyncExecutor, id="async"), pytest.param("thread", ThreadExecutor, id="thread")],
)
async def test_build_executor_builds_the_named_kind(kind: str, cls: type[Executor]) -> None:
    """build_executor returns the executor class named by executor.kind."""
    executor = build_executor(
        kind,
        processor=load_processor(ProcessorSpec(name="echo", hrv=False)),
        spec=ProcessorSpec(name="echo", hrv=False),
        retry=FAST_RETRY,
        timeout_s=1.0,
        concurrency=1,
        workers=1,
    )
    try:
        assert type(executor) is cls
        (outcome,) = await executor.run(requests("hello"))
        assert outcome.output is not None and outcome.output.content == "hello"
    finally:
        await executor.aclose()


CRASHY = ProcessorSpec(name="python:tests.fixtures.crashy:crash_on_marker", hrv=False)


@pytest.mark.timeout(120)
async def test_process_worker_crash_is_isolated_and_innocent_requests_succeed() -> None:
    """A request that kills its worker fails alone as a crash; its batch neighbours are retried and pass."""
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False)
    executor = ProcessExecutor(CRASHY, retry, timeout_s=30.0, workers=1)
    try:
        await executor.warm_up()
        outcomes = await executor.run(requests("a", CRASH_PROMPT, "b"))
        assert outcomes[0].output is not None and outcomes[0].output.content == "A"
        assert outcomes[2].output is not None and outcomes[2].output.content == "B"
        crash = outcomes[1].error
        assert crash is not None and crash.error_type == "crash"
        assert outcomes[1].attempts == 3
        (after,) = await executor.run(requests("still alive"))
        assert after.output is not None and after.output.content == "STILL ALIVE", "the pool was replaced"
    finally:
        await executor.aclose()


@pytest.mark.timeout(120)
async def test_process_pool_isolation_with_several_workers() -> None:
    """With several workers, the crash of one isolated retry does not fail the innocent retries."""
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False)
    executor = ProcessExecutor(CRASHY, retry, timeout_s=30.0, workers=2)
    try:
        await executor.warm_up()
        prompts = ["a", CRASH_PROMPT, "b", "c", "d"]
        outcomes = await executor.run(requests(*prompts))
        for prompt, outcome in zip(prompts, outcomes, strict=True):
            if prompt == CRASH_PROMPT:
                assert outcome.error is not None and outcome.error.error_type == "crash"
            else:
                assert outcome.output is not None, (prompt, outcome.error)
    finally:
        await executor.aclose()


@pytest.mark.timeout(120)
async def test_process_worker_hang_times_out_and_the_worker_is_replaced() -> None:
    """A batch exceeding its time budget becomes a timeout error, and the hung worker is replaced."""
    retry = RetryPolicy(max_attempts=1, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False)
    # The budget also covers starting the replacement worker for the next batch: keep it roomy.
    executor = ProcessExecutor(CRASHY, retry, timeout_s=3.0, workers=1)
    try:
        await executor.warm_up()
        (outcome,) = await executor.run(requests(HANG_PROMPT))
        assert outcome.error is not None and outcome.error.error_type == "timeout"
        (after,) = await executor.run(requests("next"))
        assert after.output is not None and after.output.content == "NEXT"
    finally:
        await executor.aclose()


def test_process_executor_capacity_is_one_batch_per_worker() -> None:
    """The process executor admits one batch per worker, whatever the batch size."""
    executor = ProcessExecutor(CRASHY, FAST_RETRY, timeout_s=1.0, workers=2)
    try:
        assert executor.free() > 0
        executor.acquire(500)
        assert executor.free() > 0
        executor.acquire(1)
        assert executor.free() == 0
    finally:
        asyncio.run(executor.aclose())


@pytest.mark.timeout(120)
async def test_replacement_worker_start_up_is_not_charged_to_the_next_batch() -> None:
    """After a crash, the next batch succeeds even when loading the processor takes longer than its budget."""
    spec = ProcessorSpec(name="python:tests.fixtures.crashy:SlowToLoad", hrv=False)
    retry = RetryPolicy(max_attempts=1, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False)
    executor = ProcessExecutor(spec, retry, timeout_s=LOAD_S / 3, workers=1)
    try:
        await executor.warm_up()  # the first start is warmed up, so it is not charged
        (first,) = await executor.run(requests("first"))
        assert first.output is not None, first.error
        (crashed,) = await executor.run(requests(CRASH_PROMPT))
        assert crashed.error is not None and crashed.error.error_type == "crash"
        (after,) = await executor.run(requests("next"))
        assert after.output is not None, after.error
    finally:
        await executor.aclose()
