"""An engine wired to in-memory fakes, as the service wires it, for the engine's unit tests.

The engine is built by ``wiring.build_engine`` and runs in an ``asyncio.TaskGroup`` inside
``engine.running`` (as ``Service._serve`` runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from stream_service.config import (
    BatchSettings,
    CacheSettings,
    Config,
    DeliverySettings,
    ExecutorSettings,
    ObservabilitySettings,
    RetrySettings,
)
from stream_service.errors import UpstreamUnavailable
from stream_service.messages import ErrorRecord, Request, Result
from stream_service.observability.metrics import Metrics
from stream_service.observability.tracing import Tracing
from stream_service.pipeline.decode import RequestDecoder
from stream_service.pipeline.execute import AsyncExecutor
from stream_service.pipeline.rebalance import RebalanceListener
from stream_service.pipeline.retry import RetryPolicy
from stream_service.processors.cache import ResultCache
from stream_service.wiring import build_engine
from tests.fakes import FakeConsumer, FakeProcessor, FakeProducer, FakeTxnCoordinator, SentRecord

TP0 = TopicPartition("requests", 0)
TP1 = TopicPartition("requests", 1)
DRAIN_S = 5.0
TEST_BUDGET_S = 20.0


def config(**sections: Any) -> Config:
    """A small, fast configuration; keyword arguments replace whole sections."""
    base: dict[str, Any] = {
        "batch": BatchSettings(max_size=16, min_size=1, initial_size=8, linger_ms=0.0),
        "executor": ExecutorSettings(max_in_flight=1000, concurrency=64, ordering="key"),
        "retry": RetrySettings(max_attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False),
        "cache": CacheSettings(enabled=False),
        "delivery": DeliverySettings(commit_interval_s=0.02, drain_timeout_s=DRAIN_S),
        "observability": ObservabilitySettings(metrics_port=None),
    }
    base.update(sections)
    return Config(**base)


def req(request_id: str, prompt: str, tenant: str = "acme") -> bytes:
    return msgspec.json.encode({"id": request_id, "prompt": prompt, "tenant": tenant})


class Script:
    """What the fake processor does, by prompt.

    ``fail:...`` raises a non-retriable error; ``down:...`` is always unreachable (retriable);
    ``flaky:...`` fails its first attempt; ``block:<gate>:...`` waits until :meth:`open` of that
    gate; ``jitter:...`` sleeps a random millisecond or two. Every answer is the prompt upper-cased.
    """

    def __init__(self, seed: int = 0) -> None:
        self._gates: dict[str, asyncio.Event] = {}
        self._started: dict[str, asyncio.Event] = {}
        self._rng = random.Random(seed)

    def gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def open(self, name: str) -> None:
        self.gate(name).set()

    async def started(self, prompt: str) -> None:
        """Return once a request with this prompt has started."""
        await self._started.setdefault(prompt, asyncio.Event()).wait()

    def __call__(self, request: Request, attempt: int) -> object:
        prompt = request.prompt
        self._started.setdefault(prompt, asyncio.Event()).set()
        if prompt.startswith("fail:"):
            raise ValueError(f"refused {prompt}")
        if prompt.startswith("down:"):
            raise UpstreamUnavailable("model endpoint unreachable")
        if prompt.startswith("flaky:") and attempt == 1:
            raise UpstreamUnavailable("blip")
        if prompt.startswith("block:"):
            gate = self.gate(prompt.split(":")[1])

            async def blocked() -> str:
                await gate.wait()
                return prompt.upper()

            return blocked()
        if prompt.startswith("jitter:"):
            delay_s = self._rng.uniform(0.0, 0.002)

            async def jittered() -> str:
                await asyncio.sleep(delay_s)  # a processing time, not synchronisation
                return prompt.upper()

            return jittered()
        return prompt.upper()


class Harness:
    """An engine wired to fakes, with the rebalance listener the service would install."""

    def __init__(
        self,
        cfg: Config,
        *,
        cache: ResultCache | None = None,
        seed: int = 0,
        metrics: bool = True,
        processor: Any = None,
        producer: FakeProducer | None = None,
        tracing: Tracing | None = None,
        coordinator: FakeTxnCoordinator | None = None,
    ) -> None:
        """``processor`` replaces the scripted FakeProcessor (a LoadedProcessor, say); ``tracing``
        the one ``cfg.tracing`` describes (an OtelTracing with an in-memory exporter, say);
        ``coordinator`` the transactions' fake broker side (one whose producers batch, say)."""
        self.config = cfg
        self.script = Script(seed)
        self.processor = processor if processor is not None else FakeProcessor(self.script)
        self.consumer = FakeConsumer()
        self.producer = producer if producer is not None else FakeProducer()
        self.coordinator = coordinator or FakeTxnCoordinator()  # exactly once: the transactions' broker side
        self.consumer.committed = self.coordinator.offsets  # one store of committed offsets
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, enabled=metrics)
        executor = AsyncExecutor(
            self.processor,
            RetryPolicy.from_settings(cfg.retry),
            cfg.executor.request_timeout_s,
            cfg.executor.concurrency,
        )
        decoder = RequestDecoder(
            max_prompt_bytes=cfg.limits.max_prompt_bytes,
            max_message_bytes=cfg.limits.max_message_bytes,
            default_encoding=cfg.delivery.encoding,
            known_profiles=None,
        )
        self.engine = build_engine(
            cfg,
            consumer=self.consumer,
            producer=self.producer,
            executor=executor,
            decoder=decoder,
            metrics=self.metrics,
            cache=cache,
            start_transactional=self.coordinator.start_producer,
            close_producer=_stop,
            tracing=tracing,
        )
        self.listener = RebalanceListener(self.engine, cfg.delivery.drain_timeout_s)
        self.ledger = self.engine.ledger
        self.drained: bool | None = None

    async def assign(self, *tps: TopicPartition) -> None:
        self.consumer.assign(tps)
        await self.listener.on_partitions_assigned(set(tps))

    async def revoke(self, *tps: TopicPartition) -> None:
        """As aiokafka does: the listener runs while the partitions are still assigned, then they go."""
        await self.listener.on_partitions_revoked(set(tps))
        self.consumer.revoke(tps)

    async def drain(self, timeout_s: float = DRAIN_S) -> bool:
        self.drained = await self.engine.drain(timeout_s)
        return self.drained

    def outputs(self) -> dict[tuple[int, int], list[SentRecord]]:
        """Acknowledged outputs by the (partition, offset) of their input."""
        by_source: dict[tuple[int, int], list[SentRecord]] = {}
        for rec in self.producer.acked:
            partition, offset = rec.header("source-partition"), rec.header("source-offset")
            assert partition is not None and offset is not None
            by_source.setdefault((int(partition), int(offset)), []).append(rec)
        return by_source

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0


@contextlib.asynccontextmanager
async def running(h: Harness, *tps: TopicPartition) -> AsyncIterator[Harness]:
    """Run the engine's loops like Service._serve; drain at the end unless the test did."""
    async with asyncio.TaskGroup() as tasks, h.engine.running(tasks, drain_timeout_s=DRAIN_S):
        async with asyncio.timeout(TEST_BUDGET_S):  # a stuck engine fails the test quickly
            if tps:
                await h.assign(*tps)
            yield h
            if h.drained is None:
                assert await h.drain(), "the engine did not drain"
    h.ledger.check()


def decode_result(rec: SentRecord) -> Result:
    return msgspec.json.decode(rec.value, type=Result)


def decode_error(rec: SentRecord) -> ErrorRecord:
    return msgspec.json.decode(rec.value, type=ErrorRecord)


async def settle(h: Harness, polls: int = 3) -> None:
    """Let the poll loop go round a few more times."""
    await h.consumer.wait_polls(len(h.consumer.calls) + polls)


async def not_done_within(task: asyncio.Task[Any], seconds: float) -> bool:
    """True if ``task`` is still running after ``seconds`` (checking for an absence needs a bound)."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    return not done


async def _stop(producer: Any) -> None:
    await producer.stop()
