"""The engine: the pipeline steps assembled in one place.

    consume ──> decode ──> order (key gate) ──> cache ──> schedule (fair, limited) ──> batch
       ^                                                                               │
       │ pause/resume                                                                  v
    back-pressure <── in-flight bound <── commit <── publish (acks) <── execute (retries)

Records are tracked from the moment they are consumed until their output is acknowledged;
offsets are committed only behind that point.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from aiokafka import TopicPartition

from stream_service.config import Config
from stream_service.observability import audit
from stream_service.observability.metrics import Metrics
from stream_service.pipeline.answer import Answers
from stream_service.pipeline.batch import BatchPolicy, BatchSizer
from stream_service.pipeline.commit import Committer
from stream_service.pipeline.consume import BackPressurePolicy, PollLoop
from stream_service.pipeline.decode import DecodeFailure, RequestDecoder
from stream_service.pipeline.dispatch import Dispatcher, wait_event
from stream_service.pipeline.execute import Executor
from stream_service.pipeline.publish import OutputEncoder, OutRecord, Publisher
from stream_service.pipeline.quota import TenantQuota
from stream_service.pipeline.schedule import FairScheduler, SchedulerPolicy
from stream_service.pipeline.work import PartitionState, WorkItem
from stream_service.processors.cache import ResultCache

CONTENT_TYPE_HEADER = "content-type"
ORDER_BY_PARTITION = 0  # the single gate key used when ordering = partition


class Engine:
    """Moves records from the input topic to the output topics, at least once.

    Guarantees:
    - every consumed record yields exactly one output (a Result or an ErrorRecord) before its
      offset can be committed;
    - in-flight work (consumed, output not acknowledged) stays within ``executor.max_in_flight``
      records and about ``executor.max_in_flight_bytes``; beyond it, partitions pause;
    - ``ordering = key``: records with the same key run one after another in offset order;
    - per-partition state is made fresh on every assignment, and work of a revoked partition
      that finishes late cannot touch the state of a later assignment.
    """

    def __init__(
        self,
        config: Config,
        *,
        consumer: Any,
        producer: Any,
        executor: Executor,
        decoder: RequestDecoder,
        metrics: Metrics,
        cache: ResultCache | None = None,
        renew_producer: Callable[[], Awaitable[Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.executor = executor
        self.decoder = decoder
        self.metrics = metrics
        self.cache = cache
        self.clock = clock
        self.log = structlog.get_logger("stream_service.engine")
        self.audit_requests = config.observability.audit_requests

        self.states: dict[TopicPartition, PartitionState] = {}
        # ``tracked``: consumed and not yet committed -- bounded by max_in_flight, so a crash
        # redelivers at most that many. ``active``: consumed and output not yet acknowledged.
        # ``tracked_bytes``: bytes of the active records, the memory they hold.
        self.tracked = 0
        self.active = 0
        self.tracked_bytes = 0
        self._commit_wanted = asyncio.Event()
        self._commit_threshold = max(1, config.executor.max_in_flight // 4)
        self.capacity_changed = asyncio.Event()
        self._coalescing: dict[bytes, list[WorkItem]] = {}
        self._batch_ids = itertools.count(1)
        self._tasks: asyncio.TaskGroup | None = None
        self._running: set[asyncio.Task[None]] = set()

        self.ordering = config.executor.ordering
        self.policy = BatchPolicy.from_settings(config.batch)
        self.sizer = BatchSizer(self.policy)
        self.scheduler = FairScheduler(SchedulerPolicy.from_settings(config.limiter), clock)
        self.quota = TenantQuota(config.limits, clock)
        self.encoder = OutputEncoder(
            results_topic=config.topics.results,
            errors_topic=config.topics.errors,
            encoding=config.delivery.encoding,
        )
        self.publisher = Publisher(
            producer,
            self.encoder,
            max_request_size=config.kafka.producer_max_request_size,
            renew=renew_producer,
            # the producer fails a batch after request_timeout_ms; allow it that twice, plus linger
            ack_timeout_s=2 * config.kafka.request_timeout_ms / 1000 + 1.0,
        )
        self.dispatcher = Dispatcher(
            self.scheduler,
            self.sizer,
            executor,
            self.policy,
            metrics,
            lambda items: self._spawn(self._run_batch(items)),
            clock,
        )
        self.answers = Answers(self.encoder, metrics, self.log, audit_requests=self.audit_requests)
        self.committer = Committer(consumer, self.states, on_commit=self._on_commit)
        self.poller = PollLoop(
            consumer,
            self,
            BackPressurePolicy(
                config.executor.max_in_flight, config.executor.max_in_flight_bytes, config.batch.max_size
            ),
            on_pause_change=metrics.paused_partitions.set,
            on_pause=lambda reason: metrics.pauses_total.labels(reason=reason).inc(),
        )
        metrics.batch_target_size.set(self.sizer.size)

    # ----------------------------------------------------------------- intake (consume -> decode -> order)

    def intake(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Register, decode and admit records from one ``getmany``; never raises for bad input."""
        direct: list[tuple[WorkItem, OutRecord]] = []
        decode = self.decoder.decode
        ordering = self.ordering
        quota_active = self.quota.active
        count = 0
        nbytes = 0
        for tp, records in batch.items():
            state = self.states.get(tp)
            if state is None or state.revoked:
                continue  # fetched before a rebalance took the partition away: it is redelivered
            track = state.tracker.add
            gate = state.gate
            for rec in records:
                track(rec.offset)
                value = rec.value
                size = len(value) if value is not None else 0
                content_type = None
                if rec.headers:
                    for name, hval in rec.headers:
                        if name == CONTENT_TYPE_HEADER:
                            content_type = hval.decode("latin-1")
                decoded = decode(value, content_type)
                count += 1
                nbytes += size
                if isinstance(decoded, DecodeFailure):
                    item = WorkItem(state, rec.offset, None, rec.timestamp, size, None, decoded)
                    state.in_flight += 1
                    direct.append((item, self.answers.failure(item, decoded)))
                    continue
                key = (
                    rec.key if ordering == "key" else ORDER_BY_PARTITION if ordering == "partition" else None
                )
                item = WorkItem(state, rec.offset, key, rec.timestamp, size, decoded, None)
                rejection = (
                    self.quota.admit(decoded.tenant, self.scheduler.queued(decoded.tenant))
                    if quota_active
                    else None
                )
                if rejection is not None:
                    state.in_flight += 1
                    direct.append(
                        (item, self.answers.error(item, rejection.error_type, str(rejection), 0, 0.0))
                    )
                    continue
                state.queued += 1
                if gate is None or gate.offer(key, item):
                    item.gated = gate is not None and key is not None
                    self._admit(item, direct)
                else:
                    item.gated = True
        self.tracked += count
        self.active += count
        self.tracked_bytes += nbytes
        self.metrics.consumed_total.inc(count)
        self.metrics.in_flight_requests.set(self.tracked)
        self.metrics.in_flight_bytes.set(self.tracked_bytes)
        if direct:
            self._spawn(self._publish_direct(direct))

    def _admit(self, item: WorkItem, direct: list[tuple[WorkItem, OutRecord]]) -> None:
        """A request its key gate let through: answer from the cache, join an identical one, or queue."""
        cache = self.cache
        request = item.request
        assert request is not None
        if cache is not None:
            key = item.cache_key = cache.key(request)
            hit = cache.get(key)
            if hit is not None:
                self.metrics.cache_hits_total.inc()
                item.state.queued -= 1
                item.state.in_flight += 1
                direct.append((item, self.answers.result(item, hit, attempts=0, seconds=0.0, cached=True)))
                return
            self.metrics.cache_misses_total.inc()
            followers = self._coalescing.get(key)
            if followers is not None:
                # An identical request is running: answer this one with its result.
                item.state.queued -= 1
                item.state.in_flight += 1
                followers.append(item)
                return
            self._coalescing[key] = []
        self.dispatcher.push(item)

    async def _run_batch(self, items: list[WorkItem]) -> None:
        started = self.clock()
        outcomes = await self.executor.run([item.request for item in items])  # type: ignore[misc]
        elapsed = self.clock() - started
        self.metrics.batch_target_size.set(self.sizer.record(len(items), elapsed))
        self.metrics.batch_size.observe(len(items))
        self.metrics.processing_seconds.observe_many([o.seconds for o in outcomes])
        records: list[OutRecord] = []
        finished: list[WorkItem] = []
        for item, outcome in zip(items, outcomes, strict=True):
            records.append(self.answers.outcome(item, outcome))
            finished.append(item)
            if item.cache_key is not None:
                followers = self._coalescing.pop(item.cache_key, None)
                if outcome.output is not None and self.cache is not None:
                    self.cache.put(item.cache_key, outcome.output)
                for follower in followers or ():
                    records.append(self.answers.follower(follower, outcome))
                    finished.append(follower)
        await self.publisher.publish(records)
        self._complete(finished, records, batch_latency_s=self.clock() - started)

    async def _publish_direct(self, direct: list[tuple[WorkItem, OutRecord]]) -> None:
        records = [rec for _, rec in direct]
        await self.publisher.publish(records)
        self._complete([item for item, _ in direct], records, batch_latency_s=None)

    # ----------------------------------------------------------------- completion (publish -> commit)

    def _complete(
        self, items: list[WorkItem], records: list[OutRecord], *, batch_latency_s: float | None
    ) -> None:
        """Outputs of ``items`` are acknowledged: advance offsets, open key gates, free capacity."""
        metrics = self.metrics
        now_ms = time.time() * 1000.0
        outcomes: Counter[tuple[str, str]] = Counter()
        errors: Counter[str] = Counter()
        latencies: list[float] = []
        slots: Counter[str] = Counter()
        nbytes = 0
        for item, rec in zip(items, records, strict=True):
            state = item.state
            state.tracker.done(item.offset)
            state.in_flight -= 1
            nbytes += item.size
            if item.scheduled:
                slots[item.tenant] += 1
            if item.gated:
                nxt = state.gate.release(item.key) if state.gate is not None else None
                if nxt is not None and not state.revoked:
                    direct: list[tuple[WorkItem, OutRecord]] = []
                    self._admit(nxt, direct)
                    if direct:
                        self._spawn(self._publish_direct(direct))
            if rec.error_type is not None:
                errors[rec.error_type] += 1
            outcomes[(item.tenant, rec.outcome)] += 1
            latencies.append(max(0.0, now_ms - item.timestamp_ms) / 1000.0)
        metrics.end_to_end_seconds.observe_many(latencies)
        for tenant, n in slots.items():
            self.scheduler.complete(tenant, n)
        self.active -= len(items)
        self.tracked_bytes -= nbytes
        if self.active == 0 or self.tracked - self.active >= self._commit_threshold:
            self._commit_wanted.set()  # finished work holds capacity until committed: commit now
        metrics.count_requests(outcomes)
        for error_type, n in errors.items():
            metrics.errors_total.labels(error_type=error_type).inc(n)
        metrics.published_total.labels(topic=self.encoder.results_topic).inc(
            len(items) - sum(errors.values())
        )
        if errors:
            metrics.published_total.labels(topic=self.encoder.errors_topic).inc(sum(errors.values()))
        metrics.in_flight_requests.set(self.tracked)
        metrics.in_flight_bytes.set(self.tracked_bytes)
        if batch_latency_s is not None:
            audit.batch_completed(
                self.log,
                batch_id=next(self._batch_ids),
                size=len(items),
                partitions={(i.state.topic, i.state.partition) for i in items},
                tenants=Counter(i.tenant for i in items),
                outcomes=Counter(rec.outcome for rec in records),
                latency_s=round(batch_latency_s, 6),
            )
        self.capacity_changed.set()
        self.dispatcher.completed.set()

    # ----------------------------------------------------------------- assignment, drain, commit

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Fresh state for every assigned partition (paused flags, buffers, gates all reset)."""
        ordered = self.ordering != "unordered"
        for tp in partitions:
            self.states[tp] = PartitionState(tp.topic, tp.partition, ordered=ordered)
        self.consumer.resume(*self.states.keys())  # pause state must not survive a rebalance
        self.metrics.assigned_partitions.set(len(self.states))

    def stop_admitting(self, partitions: Iterable[TopicPartition]) -> list[PartitionState]:
        """Revoke: drop waiting work of these partitions (it is redelivered) and return their states."""
        revoked: list[PartitionState] = []
        for tp in partitions:
            state = self.states.get(tp)
            if state is not None:
                state.revoked = True
                revoked.append(state)
        if not revoked:
            return revoked
        dropped = self.scheduler.remove_if(lambda item: item.state.revoked)
        for state in revoked:
            if state.gate is not None:
                dropped.extend(state.gate.clear())
            state.queued = 0
        for item in list(dropped):
            if item.cache_key is None or item.cache_key not in self._coalescing:
                continue
            followers = self._coalescing.pop(item.cache_key)
            for follower in followers:
                if follower.state.revoked:
                    follower.state.in_flight -= 1
                    dropped.append(follower)
            survivors = [f for f in followers if not f.state.revoked]
            if survivors:
                # The leader is gone with its partition; the first identical request left leads now.
                leader, rest = survivors[0], survivors[1:]
                leader.state.in_flight -= 1
                leader.state.queued += 1
                self._coalescing[item.cache_key] = rest
                self.dispatcher.push(leader)
        self.active -= len(dropped)  # never acknowledged; ``tracked`` drops when the state is forgotten
        self.tracked_bytes -= sum(item.size for item in dropped)
        self.capacity_changed.set()
        return revoked

    async def wait_idle(self, states: Iterable[PartitionState] | None, timeout_s: float) -> bool:
        """Wait until the given partitions (default: all work) have nothing in flight."""
        deadline = self.clock() + timeout_s

        def busy() -> bool:
            if states is None:
                return self.active > 0
            return any(s.in_flight > 0 for s in states)

        while busy():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return False
            self.dispatcher.completed.clear()
            if busy():
                await wait_event(self.dispatcher.completed, remaining)
        return True

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Release revoked partitions: whatever they still hold is no longer ours to commit."""
        for tp in partitions:
            state = self.states.pop(tp, None)
            if state is not None:
                self.tracked -= state.tracker.held()
        self.metrics.in_flight_requests.set(self.tracked)
        self.capacity_changed.set()
        self.committer.forget(partitions)
        self.metrics.forget_partitions((tp.topic, tp.partition) for tp in partitions)
        self.metrics.assigned_partitions.set(len(self.states))

    def _on_commit(self, offsets: dict[TopicPartition, int], released: int) -> None:
        self.tracked -= released
        self.metrics.in_flight_requests.set(self.tracked)
        self.capacity_changed.set()
        self.metrics.commits_total.inc()
        audit.committed(self.log, {(tp.topic, tp.partition): off for tp, off in offsets.items()})

    async def commit_loop(self) -> None:
        """Commit about once per ``delivery.commit_interval_s`` and refresh the lag gauges."""
        interval = self.config.delivery.commit_interval_s
        while True:
            # About once an interval, or sooner when finished work is holding capacity.
            await wait_event(self._commit_wanted, interval)
            self._commit_wanted.clear()
            await self.committer.commit()
            for tp, state in self.states.items():
                high = self.consumer.highwater(tp)
                done = state.tracker.committable()
                if high is not None and done is not None:
                    self.metrics.set_lag(tp.topic, tp.partition, high - done)

    # ----------------------------------------------------------------- lifecycle

    def start(self, tasks: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Start the loops in the service's TaskGroup; return the ones to cancel at shutdown."""
        self._tasks = tasks
        return [
            tasks.create_task(self.poller.run(), name="poll"),
            tasks.create_task(self.dispatcher.run(), name="dispatch"),
            tasks.create_task(self.commit_loop(), name="commit"),
        ]

    def _spawn(self, coro: Any) -> None:
        """Run a batch's work as a task of the service's TaskGroup, remembered until it ends."""
        assert self._tasks is not None, "engine not started"
        task = self._tasks.create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def cancel_in_flight(self) -> None:
        """Shutdown after a drain timeout: abandon unfinished work (it is redelivered, never lost)."""
        for task in list(self._running):
            task.cancel()

    async def drain(self, timeout_s: float) -> bool:
        """Stop consuming, finish everything consumed, and commit. Return False on timeout."""
        self.poller.stop()
        self.dispatcher.drain()
        idle = await self.wait_idle(None, timeout_s)
        await self.committer.commit()
        return idle
