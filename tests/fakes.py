"""In-memory fakes of the aiokafka surface the engine uses, and a clock stepped by hand.

They model only what the pipeline relies on: a consumer that hands out fed records from
assigned, unpaused partitions (``getmany``), pauses and resumes, commits; a producer whose
``send`` enqueues and returns a future that resolves on acknowledgement, which a test can fail,
hold back, or refuse as too large. Tests wait on their events instead of sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord, RecordMetadata

from stream_service.messages import Request
from stream_service.processors.base import Output

Headers = Sequence[tuple[str, bytes]]


class FakeClock:
    """A monotonic clock that moves only when the test calls :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    __call__ = now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self._now += seconds


def record(
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    *,
    key: bytes | None = None,
    headers: Headers = (),
    timestamp_ms: int = 0,
) -> ConsumerRecord[bytes, bytes]:
    """A ConsumerRecord as aiokafka hands it out."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key) if key is not None else -1,
        serialized_value_size=len(value) if value is not None else -1,
        headers=list(headers),
    )


class GetmanyCall(NamedTuple):
    timeout_ms: int
    max_records: int | None
    returned: int
    paused: frozenset[TopicPartition]


class FakeConsumer:
    """A consumer-group member's view of its partitions, fed by the test.

    Records are handed out in offset order per partition, only from assigned, unpaused
    partitions, at most ``max_records`` per ``getmany``. Every ``getmany`` is recorded in
    :attr:`calls`. :meth:`revoke` and :meth:`assign` simulate a rebalance; a reassigned
    partition restarts from its last committed offset (redelivery), as Kafka does.
    """

    def __init__(self, assignment: Iterable[TopicPartition] = ()) -> None:
        self._assignment: set[TopicPartition] = set(assignment)
        self._paused: set[TopicPartition] = set()
        self._log: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        self._position: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.calls: list[GetmanyCall] = []
        self._fed = asyncio.Event()
        self._polled = asyncio.Event()
        self.waiting = asyncio.Event()  # set while a getmany waits for records to be fed
        self._commit_failures: list[BaseException] = []
        self._getmany_failures: list[BaseException] = []

    # ---------------------------------------------------------------- test controls

    def feed(self, tp: TopicPartition, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        """Append records (offsets increasing) to a partition's log."""
        log = self._log.setdefault(tp, [])
        for rec in records:
            if log and rec.offset <= log[-1].offset:
                raise ValueError(f"offset {rec.offset} fed after {log[-1].offset}")
            log.append(rec)
        self._fed.set()

    def feed_values(
        self,
        tp: TopicPartition,
        values: Iterable[bytes | None],
        *,
        keys: Iterable[bytes | None] | None = None,
        headers: Headers = (),
    ) -> list[int]:
        """Append values at the next offsets; return those offsets."""
        log = self._log.setdefault(tp, [])
        start = log[-1].offset + 1 if log else 0
        values = list(values)
        key_list = list(keys) if keys is not None else [None] * len(values)
        records = [
            record(tp.topic, tp.partition, start + i, v, key=k, headers=headers)
            for i, (v, k) in enumerate(zip(values, key_list, strict=True))
        ]
        self.feed(tp, records)
        return [r.offset for r in records]

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Add partitions to the assignment; fetching restarts at the committed offset."""
        for tp in partitions:
            self._assignment.add(tp)
            self._paused.discard(tp)
            self._position[tp] = self.committed.get(tp, 0)

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Take partitions away (after the listener ran, as aiokafka does)."""
        for tp in partitions:
            self._assignment.discard(tp)
            self._paused.discard(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch ``tp`` from ``offset`` next."""
        self._position[tp] = offset

    async def seek_to_committed(self, *partitions: TopicPartition) -> dict[TopicPartition, int | None]:
        """Fetch each partition from its committed offset (as of now); the offsets, None when none."""
        await asyncio.sleep(0)  # an OffsetFetch round trip
        found: dict[TopicPartition, int | None] = {}
        for tp in partitions:
            found[tp] = self.committed.get(tp)
            if found[tp] is not None:
                self._position[tp] = found[tp]  # type: ignore[assignment]
        return found

    def recreate(self, tp: TopicPartition) -> None:
        """The topic was deleted and created again: the log restarts at offset 0, and so does fetching."""
        self._log[tp] = []
        self._position[tp] = 0

    def fail_next_commits(self, n: int, exc: type[KafkaError] = KafkaError) -> None:
        self._commit_failures.extend(exc(f"injected commit failure {i}") for i in range(n))

    def fail_next_getmany(self, n: int, exc: type[KafkaError] = KafkaError) -> None:
        self._getmany_failures.extend(exc(f"injected fetch failure {i}") for i in range(n))

    async def wait_polls(self, n: int) -> None:
        """Return once ``getmany`` has been called at least ``n`` times in total."""
        while len(self.calls) < n:
            self._polled.clear()
            await self._polled.wait()

    def remaining(self, tp: TopicPartition) -> int:
        """Fed records of ``tp`` not yet handed out."""
        position = self._position.get(tp, 0)
        return sum(1 for r in self._log.get(tp, ()) if r.offset >= position)

    # ---------------------------------------------------------------- aiokafka surface

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            if tp in self._assignment:
                self._paused.add(tp)

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._paused.discard(tp)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def highwater(self, tp: TopicPartition) -> int | None:
        log = self._log.get(tp)
        if tp not in self._assignment:
            return None
        return log[-1].offset + 1 if log else 0

    def _take(self, max_records: int | None) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        budget = max_records if max_records is not None else 1 << 30
        out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp in sorted(self._assignment):
            if tp in self._paused or budget <= 0:
                continue
            position = self._position.get(tp, 0)
            chosen = [r for r in self._log.get(tp, ()) if r.offset >= position][:budget]
            if chosen:
                out[tp] = chosen
                budget -= len(chosen)
                self._position[tp] = chosen[-1].offset + 1
        return out

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self._getmany_failures:
            self.calls.append(GetmanyCall(timeout_ms, max_records, 0, frozenset(self._paused)))
            self._polled.set()
            raise self._getmany_failures.pop(0)
        batch = self._take(max_records)
        if not batch and timeout_ms > 0:
            self._fed.clear()
            self.waiting.set()
            try:
                async with asyncio.timeout(timeout_ms / 1000):
                    await self._fed.wait()
            except TimeoutError:
                pass
            finally:
                self.waiting.clear()
            batch = self._take(max_records)
        self.calls.append(
            GetmanyCall(timeout_ms, max_records, sum(map(len, batch.values())), frozenset(self._paused))
        )
        self._polled.set()
        return batch

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await asyncio.sleep(0)  # a real commit is a network round trip: let other tasks run
        if self._commit_failures:
            raise self._commit_failures.pop(0)
        self.commits.append(dict(offsets))
        self.committed.update(offsets)


@dataclass
class SentRecord:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    future: asyncio.Future[Any] = field(repr=False)

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


class FakeBatch:
    """What ``create_batch`` returns: records appended until ``capacity`` bytes (values) are used."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.closed = False
        self.records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []

    def append(
        self, *, key: bytes | None, value: bytes, timestamp: int | None, headers: Headers
    ) -> object | None:
        if self.closed or (self.records and self.size() + len(value) > self.capacity):
            return None  # full or closed, as aiokafka's BatchBuilder says
        self.records.append((key, value, list(headers)))
        return object()

    def size(self) -> int:
        return sum(len(value) for _, value, _ in self.records)

    def close(self) -> None:
        """Complete: aiokafka's BatchBuilder then takes no more records and skips the linger."""
        self.closed = True


class FakeProducer:
    """A producer whose acknowledgements the test controls.

    ``send`` only enqueues and returns a future (as aiokafka's does). By default the future
    resolves at once; :meth:`fail_next` makes the next futures fail, :meth:`raise_next` makes the
    next ``send`` calls raise, :meth:`hold_acks` keeps futures pending until :meth:`release_acks`,
    a value over ``max_size`` bytes raises ``MessageSizeTooLargeError`` from ``send`` (the client's
    check), and one over ``broker_max_size`` fails its future with it (the broker's answer).
    With ``batching``, it also offers ``create_batch``/``send_batch`` (one future per batch) and
    ``partitions_for``; the broker then refuses any batch (or lone record) whose values add up to
    more than ``broker_max_batch`` bytes, as a topic's ``max.message.bytes`` does.
    :attr:`acked` lists records in acknowledgement order; :attr:`attempts` every record sent.
    """

    def __init__(
        self,
        *,
        max_size: int | None = None,
        broker_max_size: int | None = None,
        batching: bool = False,
        broker_max_batch: int | None = None,
        batch_capacity: int = 1 << 20,
        partitions: int = 4,
    ) -> None:
        self.max_size = max_size
        self.broker_max_size = broker_max_size
        self.broker_max_batch = broker_max_batch
        self.batch_capacity = batch_capacity
        self.partition_count = partitions
        self.batches_sent = 0
        if batching:
            self.create_batch = self._create_batch
            self.send_batch = self._send_batch
        self.attempts: list[SentRecord] = []
        self.acked: list[SentRecord] = []
        self.held: list[SentRecord] = []
        self.acks_released = asyncio.Event()
        self.acks_released.set()
        self._fail: list[BaseException] = []
        self._raise: list[BaseException] = []
        self._sent = asyncio.Event()
        self._offsets: dict[str, int] = {}

    def fail_next(self, n: int, exc: type[KafkaError] = KafkaTimeoutError) -> None:
        self._fail.extend(exc(f"injected send failure {i}") for i in range(n))

    def raise_next(self, n: int, exc: type[KafkaError] = KafkaTimeoutError) -> None:
        self._raise.extend(exc(f"injected enqueue failure {i}") for i in range(n))

    def hold_acks(self) -> None:
        self.acks_released.clear()

    def release_acks(self, *, reverse: bool = False) -> None:
        """Acknowledge every held record (in reverse send order if asked) and stop holding."""
        self.acks_released.set()
        held, self.held = self.held, []
        for rec in reversed(held) if reverse else held:
            self._ack(rec)

    async def wait_sent(self, n: int) -> None:
        """Return once ``send`` has been called at least ``n`` times in total."""
        while len(self.attempts) < n:
            self._sent.clear()
            await self._sent.wait()

    async def wait_acked(self, n: int) -> None:
        """Return once at least ``n`` records have been acknowledged."""
        while len(self.acked) < n:
            self._sent.clear()
            await self._sent.wait()

    def _ack(self, rec: SentRecord) -> None:
        offset = self._offsets.get(rec.topic, 0)
        self._offsets[rec.topic] = offset + 1
        self.acked.append(rec)
        if not rec.future.done():  # a batch's records share one future
            metadata = RecordMetadata(rec.topic, 0, TopicPartition(rec.topic, 0), offset, -1, 0, -1)
            rec.future.set_result(metadata)
        self._sent.set()

    def on_topic(self, topic: str) -> list[SentRecord]:
        return [r for r in self.acked if r.topic == topic]

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        if self._raise:
            raise self._raise.pop(0)
        if self.max_size is not None and len(value) > self.max_size:
            raise MessageSizeTooLargeError(f"{len(value)} bytes is over {self.max_size}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._deliver(future, [SentRecord(topic, value, key, list(headers or ()), future)])
        return future

    def _deliver(self, future: asyncio.Future[Any], records: list[SentRecord]) -> None:
        self.attempts.extend(records)
        self._sent.set()
        total = sum(len(rec.value) for rec in records)
        if self._fail:
            future.set_exception(self._fail.pop(0))
        elif self.broker_max_size is not None and any(len(r.value) > self.broker_max_size for r in records):
            future.set_exception(MessageSizeTooLargeError("rejected by the broker"))
        elif self.broker_max_batch is not None and total > self.broker_max_batch:
            future.set_exception(MessageSizeTooLargeError("batch rejected by the broker"))
        elif self.acks_released.is_set():
            for rec in records:
                self._ack(rec)
        else:
            self.held.extend(records)

    def _create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_capacity)

    async def _send_batch(self, batch: FakeBatch, topic: str, partition: int) -> asyncio.Future[Any]:
        if self._raise:
            raise self._raise.pop(0)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches_sent += 1
        self._deliver(future, [SentRecord(topic, v, k, h, future) for k, v, h in batch.records])
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partition_count))


Behaviour = Callable[[Request, int], object]
"""(request, attempt number of that request) -> the content, a coroutine giving it, or raise."""


class FakeProcessor:
    """The LoadedProcessor surface the executors call, with a scripted behaviour per request.

    Attempts are counted per request id in :attr:`calls`; :attr:`max_running` is the highest
    number of concurrent async calls, :attr:`threads` the threads sync calls ran in.
    """

    def __init__(self, behaviour: Behaviour, *, is_async: bool = True, is_batch: bool = False) -> None:
        self.behaviour = behaviour
        self.is_async = is_async
        self.is_batch = is_batch
        self.profiles: frozenset[str] | None = None
        self.calls: dict[str, int] = {}
        self.running = 0
        self.max_running = 0
        self.threads: set[str] = set()
        self.closed = False

    def _count(self, request: Request) -> int:
        self.calls[request.id] = attempt = self.calls.get(request.id, 0) + 1
        return attempt

    def call_sync(self, requests: Sequence[Request]) -> list[Output | BaseException]:
        results: list[Output | BaseException] = []
        for request in requests:
            self.threads.add(threading.current_thread().name)
            try:
                results.append(Output(content=str(self.behaviour(request, self._count(request)))))
            except Exception as exc:
                results.append(exc)
        return results

    async def call_async(self, request: Request) -> Output:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(0)  # let the other requests of the batch start too
            result = self.behaviour(request, self._count(request))
            if asyncio.iscoroutine(result):
                result = await result
            return Output(content=str(result))
        finally:
            self.running -= 1

    async def call_async_batch(self, requests: Sequence[Request]) -> list[Output | BaseException]:
        results: list[Output | BaseException] = []
        for request in requests:
            try:
                results.append(await self.call_async(request))
            except Exception as exc:
                results.append(exc)
        return results

    async def aclose(self) -> None:
        self.closed = True


class FakeTxnCoordinator:
    """The broker side of transactions, for :class:`FakeTxnProducer`.

    Producers of one transactional id fence each other (the newer epoch wins). :attr:`committed`
    holds the records of committed transactions, in commit order (what a read_committed
    consumer sees); :attr:`offsets` the offsets committed with them, by (group, partition).
    """

    def __init__(self, *, batching: bool = False, partitions: int = 4) -> None:
        self.batching = batching  # producers offer create_batch/send_batch, as aiokafka's do
        self.partition_count = partitions
        self.batches_sent = 0
        self.epochs: dict[str, int] = {}
        self.committed: list[SentRecord] = []
        self.offsets: dict[TopicPartition, int] = {}
        self.aborted = 0
        self.commits = 0
        self._fail_commits: list[BaseException] = []
        self._fail_sends: list[BaseException] = []
        self.changed = asyncio.Event()

    def fail_next_commits(self, n: int, exc: type[KafkaError] = KafkaError) -> None:
        self._fail_commits.extend(exc(f"injected commit failure {i}") for i in range(n))

    def fail_next_sends(self, n: int, exc: type[KafkaError] = KafkaTimeoutError) -> None:
        self._fail_sends.extend(exc(f"injected send failure {i}") for i in range(n))

    def producer(self, transactional_id: str) -> FakeTxnProducer:
        return FakeTxnProducer(self, transactional_id)

    async def start_producer(self, transactional_id: str) -> FakeTxnProducer:
        producer = self.producer(transactional_id)
        await producer.start()
        return producer

    async def wait_committed(self, n: int) -> None:
        """Return once at least ``n`` records are in committed transactions."""
        while len(self.committed) < n:
            self.changed.clear()
            await self.changed.wait()


class FakeTxnProducer:
    """A transactional producer: sends go into the open transaction, visible once it commits.

    With the coordinator's ``batching``, it also offers ``create_batch``/``send_batch`` (one
    future per batch; an injected send failure fails the whole batch) and ``partitions_for``.
    """

    def __init__(self, coordinator: FakeTxnCoordinator, transactional_id: str) -> None:
        if coordinator.batching:
            self.create_batch = self._create_batch
            self.send_batch = self._send_batch
        self.coordinator = coordinator
        self.transactional_id = transactional_id
        self.epoch = -1
        self.in_txn = False
        self.pending: list[SentRecord] = []
        self.pending_offsets: dict[TopicPartition, int] = {}
        self.stopped = False

    def _check(self) -> None:
        from aiokafka.errors import ProducerFenced

        if self.coordinator.epochs.get(self.transactional_id) != self.epoch:
            raise ProducerFenced(f"{self.transactional_id} epoch {self.epoch} was fenced")

    async def start(self) -> None:
        await asyncio.sleep(0)  # a round trip to the transaction coordinator
        self.epoch = self.coordinator.epochs[self.transactional_id] = (
            self.coordinator.epochs.get(self.transactional_id, -1) + 1
        )

    async def begin_transaction(self) -> None:
        self._check()
        self.in_txn, self.pending, self.pending_offsets = True, [], {}

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        if not self.in_txn:
            raise KafkaError("Can't send messages while not in transaction")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.coordinator._fail_sends:
            future.set_exception(self.coordinator._fail_sends.pop(0))
            return future
        rec = SentRecord(topic, value, key, list(headers or ()), future)
        self.pending.append(rec)
        future.set_result(RecordMetadata(topic, 0, TopicPartition(topic, 0), len(self.pending), -1, 0, -1))
        return future

    def _create_batch(self) -> FakeBatch:
        return FakeBatch(1 << 20)

    async def _send_batch(self, batch: FakeBatch, topic: str, partition: int) -> asyncio.Future[Any]:
        if not self.in_txn:
            raise KafkaError("Can't send messages while not in transaction")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.coordinator.batches_sent += 1
        if self.coordinator._fail_sends:
            future.set_exception(self.coordinator._fail_sends.pop(0))
            return future
        for key, value, headers in batch.records:
            self.pending.append(SentRecord(topic, value, key, headers, future))
        future.set_result(RecordMetadata(topic, partition, TopicPartition(topic, partition), 0, -1, 0, -1))
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.coordinator.partition_count))

    async def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None:
        self._check()
        self.pending_offsets.update(offsets)

    async def commit_transaction(self) -> None:
        await asyncio.sleep(0)  # EndTxn is a round trip: let other tasks run meanwhile
        self._check()
        if self.coordinator._fail_commits:
            raise self.coordinator._fail_commits.pop(0)
        self.coordinator.committed.extend(self.pending)
        self.coordinator.offsets.update(self.pending_offsets)
        self.coordinator.commits += 1
        self.in_txn, self.pending, self.pending_offsets = False, [], {}
        self.coordinator.changed.set()

    async def abort_transaction(self) -> None:
        self._check()
        self.coordinator.aborted += 1
        self.in_txn, self.pending, self.pending_offsets = False, [], {}

    async def stop(self) -> None:
        self.stopped = True
