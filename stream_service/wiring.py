"""Wiring: the one place that turns a :class:`Config` into running parts.

:func:`build_service` makes everything a service instance needs (Kafka clients, processor,
executor, cache, metrics, ops server, engine); :func:`build_engine` makes the engine from
ready-made clients and executor, which is how tests build it with fakes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from stream_service import clients
from stream_service.engine import Engine, EngineParts
from stream_service.errors import ConfigError
from stream_service.observability import audit
from stream_service.observability.completion import CompletionReport
from stream_service.observability.endpoints import OpsServer, Readiness
from stream_service.observability.metrics import Metrics
from stream_service.observability.tracing import Tracing, build_tracing
from stream_service.pipeline.admit import Admission
from stream_service.pipeline.answer import Answers
from stream_service.pipeline.batch import BatchPolicy, BatchSizer
from stream_service.pipeline.coalesce import Coalescer
from stream_service.pipeline.commit import CommitLoop, CommitPolicy, Commits, Committer, refresh_lag
from stream_service.pipeline.consume import BackPressurePolicy, PollLoop
from stream_service.pipeline.decode import RequestDecoder
from stream_service.pipeline.dispatch import Dispatcher
from stream_service.pipeline.encode import OutputEncoder
from stream_service.pipeline.execute import AsyncExecutor, Executor
from stream_service.pipeline.execute_processes import ProcessExecutor
from stream_service.pipeline.execute_threads import ThreadExecutor
from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.publish import Outlet, Publisher
from stream_service.pipeline.quota import TenantQuota
from stream_service.pipeline.retry import RetryPolicy
from stream_service.pipeline.schedule import FairScheduler, SchedulerPolicy
from stream_service.pipeline.transact import StartProducer, Transactions
from stream_service.processors.cache import CacheBackend, ResultCache
from stream_service.processors.loader import LoadedProcessor, ProcessorSpec, load_processor
from stream_service.settings import Config


def build_engine(
    config: Config,
    *,
    consumer: Any,
    producer: Any,
    executor: Executor,
    decoder: RequestDecoder,
    metrics: Metrics,
    cache: CacheBackend | None = None,
    renew_producer: Callable[[], Awaitable[Any]] | None = None,
    start_transactional: StartProducer | None = None,
    close_producer: Callable[[Any], Awaitable[None]] = clients.close_producer,
    clock: Callable[[], float] = time.monotonic,
    tracing: Tracing | None = None,
) -> Engine:
    """The engine for ``config``, around the given clients, executor and decoder.

    At least once, outputs go through ``producer``; exactly once, through one transactional
    producer per input partition made by ``start_transactional`` (transactional id -> started
    producer), and ``producer`` is not used. ``tracing`` defaults to the one ``config.tracing``
    describes (tests pass one with an in-memory exporter)."""
    if tracing is None:
        tracing = _tracing(config)
    log = structlog.get_logger("stream_service.engine")
    ledger = Ledger(
        ordered=config.executor.ordering != "unordered",
        on_levels=functools.partial(_set_levels, metrics),
        clock=clock,
    )
    batch_policy = BatchPolicy.from_settings(config.batch)
    sizer = BatchSizer(batch_policy)
    metrics.batch_target_size.set(sizer.size)
    scheduler = FairScheduler(SchedulerPolicy.from_settings(config.limiter), clock)
    encoder = OutputEncoder(
        results_topic=config.topics.results,
        errors_topic=config.topics.errors,
        encoding=config.delivery.encoding,
    )
    answers = Answers(encoder, metrics, log, audit_requests=config.observability.audit_requests)
    admission = Admission(
        ledger,
        decoder,
        TenantQuota(config.limits, clock),
        answers,
        ordering=config.executor.ordering,
        queued_of=scheduler.queued,
        tracing=tracing,
    )
    delivery = config.delivery
    publisher: Outlet
    committer: Commits
    if delivery.guarantee == "exactly_once":
        if start_transactional is None:
            raise ValueError("exactly_once needs start_transactional")
        transactions = Transactions(
            start_producer=start_transactional,
            close_producer=close_producer,
            encoder=encoder,
            ledger=ledger,
            group_id=config.topics.group_id,
            txn_id_prefix=delivery.transactional_id_prefix,
            max_record_bytes=config.kafka.producer_max_request_size,
            batch_bytes=clients.producer_batch_bytes(config),
            on_committed=lambda n, seconds: _committed_transaction(metrics, seconds),
            on_aborted=lambda why: metrics.transactions_total.labels(outcome="aborted").inc(),
        )
        publisher = committer = transactions
        policy = CommitPolicy(delivery.transaction_interval_ms / 1000, delivery.transaction_max_records)
    else:
        publisher = Publisher(
            producer,
            encoder,
            max_request_size=config.kafka.producer_max_request_size,
            renew=renew_producer,
            close=close_producer,
            # the producer fails a batch after request_timeout_ms; allow it that twice, plus linger
            ack_timeout_s=2 * config.kafka.request_timeout_ms / 1000 + 1.0,
            on_failed=metrics.publish_failures_total.inc,
            on_renewed=metrics.producer_replacements_total.inc,
        )

        def on_commit(offsets: dict[Any, int]) -> None:
            metrics.commits_total.inc()
            audit.committed(log, {(tp.topic, tp.partition): off for tp, off in offsets.items()})

        committer = Committer(
            consumer, ledger, on_commit=on_commit, on_failure=lambda _: metrics.commit_failures_total.inc()
        )
        policy = CommitPolicy.for_capacity(delivery.commit_interval_s, config.executor.max_in_flight)
    commits = CommitLoop(
        committer,
        ledger,
        policy,
        after_commit=functools.partial(refresh_lag, consumer, ledger, metrics.set_lag),
        clock=clock,
    )
    poller = PollLoop(
        consumer,
        ledger,
        BackPressurePolicy(
            config.executor.max_in_flight, config.executor.max_in_flight_bytes, config.batch.max_size
        ),
        on_pause_change=metrics.paused_partitions.set,
        on_pause=lambda reason: metrics.pauses_total.labels(reason=reason).inc(),
    )
    metrics.tenant_states.labels(kind="scheduler").set_function(lambda: scheduler.tenants)
    metrics.tenant_states.labels(kind="tenant_headers").set_function(lambda: encoder.cached_tenants)
    parts = EngineParts(
        ledger=ledger,
        poller=poller,
        admission=admission,
        coalescer=Coalescer(cache, answers, metrics),
        answers=answers,
        scheduler=scheduler,
        dispatcher=Dispatcher(scheduler, sizer, executor, ledger, batch_policy, metrics, clock),
        sizer=sizer,
        executor=executor,
        publisher=publisher,
        commits=commits,
        report=CompletionReport(
            metrics, log, results_topic=config.topics.results, errors_topic=config.topics.errors
        ),
        metrics=metrics,
        tracing=tracing,
        clock=clock,
    )
    return Engine(parts)


def _tracing(config: Config) -> Tracing:
    return build_tracing(config.tracing, input_topic=config.topics.input, group_id=config.topics.group_id)


def _committed_transaction(metrics: Metrics, seconds: float) -> None:
    metrics.commits_total.inc()
    metrics.transaction_commit_seconds.observe(seconds)
    metrics.transactions_total.labels(outcome="committed").inc()


def _set_levels(metrics: Metrics, tracked: int, nbytes: int) -> None:
    metrics.in_flight_requests.set(tracked)
    metrics.in_flight_bytes.set(nbytes)


@dataclass(frozen=True, slots=True)
class ServiceParts:
    """Everything one service instance runs, built but not started."""

    consumer: Any
    executor: Executor
    metrics: Metrics
    engine: Engine
    ops: OpsServer | None
    tracing: Tracing

    @property
    def producer(self) -> Any | None:
        """At least once, the publisher's current producer (it may have been replaced since the
        start); exactly once there is none (each partition has its own, started on assignment)."""
        return getattr(self.engine.parts.publisher, "producer", None)

    @property
    def transactions(self) -> Transactions | None:
        publisher = self.engine.parts.publisher
        return publisher if isinstance(publisher, Transactions) else None


def build_service(config: Config, readiness: Readiness) -> ServiceParts:
    """Build a service instance from ``config``. Raises ``PluginError``/``ConfigError`` when the
    processor cannot be loaded, or tracing is on without its extra; connects to nothing yet."""
    tracing = _tracing(config)
    tracing.make_global()
    spec = ProcessorSpec.from_settings(config.processor, trace_requests=tracing.enabled)
    processor = load_processor(spec)
    metrics = Metrics(
        enabled=config.observability.metrics,
        output_topics=(config.topics.results, config.topics.errors),
    )
    consumer = clients.service_consumer(config)

    executor = build_executor(
        config.executor.kind,
        processor=processor,
        spec=spec,
        retry=RetryPolicy.from_settings(config.retry),
        timeout_s=config.executor.request_timeout_s,
        concurrency=config.executor.concurrency,
        workers=config.executor.workers,
    )
    cache = (
        ResultCache(max_entries=config.cache.max_entries, ttl_s=config.cache.ttl_s, metrics=metrics)
        if config.cache.enabled
        else None
    )
    decoder = RequestDecoder(
        max_prompt_bytes=config.limits.max_prompt_bytes,
        max_message_bytes=config.limits.max_message_bytes,
        default_encoding=config.delivery.encoding,
        known_profiles=processor.profiles,
    )
    exactly_once = config.delivery.guarantee == "exactly_once"
    engine = build_engine(
        config,
        consumer=consumer,
        producer=None if exactly_once else clients.service_producer(config),
        start_transactional=functools.partial(clients.start_transactional, config),
        executor=executor,
        decoder=decoder,
        metrics=metrics,
        cache=cache,
        renew_producer=functools.partial(clients.start_producer, config),
        tracing=tracing,
    )
    obs = config.observability
    ops = (
        OpsServer(obs.metrics_host, obs.metrics_port, metrics, readiness)
        if obs.metrics_port is not None
        else None
    )
    return ServiceParts(consumer, executor, metrics, engine, ops, tracing)


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
    """The executor named by ``executor.kind``. With ``async``, a sync processor that may block
    (any plugin) runs on ``workers`` threads instead of on the event loop."""
    if kind == "async" and (processor.is_async or processor.inline):
        return AsyncExecutor(processor, retry, timeout_s, concurrency)
    if kind in ("async", "thread"):
        return ThreadExecutor(processor, retry, timeout_s, workers)
    if kind == "process":
        return ProcessExecutor(spec, retry, timeout_s, workers)
    raise ConfigError(f"invalid setting executor.kind = {kind!r}: expected async, thread or process")
