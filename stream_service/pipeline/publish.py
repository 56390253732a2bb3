"""Publish: send output records and await their acknowledgement, whatever Kafka answers."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordTooLargeError,
    UnknownProducerId,
)

from stream_service.pipeline.encode import OutputEncoder, OutRecord
from stream_service.pipeline.partition import murmur2, partition_of
from stream_service.pipeline.work import PartitionState

PUBLISH_BACKOFF_INITIAL_S = 0.2
PUBLISH_BACKOFF_MAX_S = 5.0
RETRY_LOG_INTERVAL_S = 1.0  # at most one publish.retry line per interval
RENEW_AFTER_FAILED_ROUNDS = 4  # consecutive failed rounds of one batch before the producer is replaced

# The producer's sender dies on these; only a new producer (new producer id) gets going again.
FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)
TOO_LARGE_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError)
DEFAULT_ACK_TIMEOUT_S = 90.0  # beyond the producer's own request timeout: it should have answered
BATCHED_MIN_RECORDS = 64  # records for one partition worth a batch of their own
BATCHED_RECORD_MAX_BYTES = 64 * 1024  # larger outputs are sent one by one (an oversized one fails alone)
RECORD_OVERHEAD_BYTES = 64  # what a record adds to a batch beyond its key, value and headers (about)
MIN_BATCH_CAP_BYTES = 1024  # the batch size cap never falls below this

SendResult = asyncio.Future[Any] | BaseException
Close = Callable[[Any], Awaitable[None]]
Replay = Callable[[TopicPartition, int | None], Awaitable[None]]
Done = Callable[[list[OutRecord]], None]  # told which records are acknowledged (or discarded) now


class Outlet(Protocol):
    """Where outputs go: :class:`Publisher` (at least once) or
    :class:`~stream_service.pipeline.transact.Transactions` (exactly once).

    ``publish`` returns once the records are acknowledged (or, exactly once, discarded because
    their inputs are read again), telling ``done`` as groups of them get there; ``prepare``
    readies newly assigned partitions and ``close`` lets revoked ones go (None: all, at
    shutdown). With ``fences`` true, a newly assigned partition must be read from its committed
    offset once ``prepare`` returned (previous owners are fenced only then).
    """

    fences: bool

    def bind(self, *, replay: Replay, on_lost: Callable[[TopicPartition], None]) -> None: ...

    async def prepare(self, states: Iterable[tuple[TopicPartition, PartitionState]]) -> None: ...

    def rebind(self, tp: TopicPartition, state: PartitionState) -> None: ...

    async def publish(self, records: Sequence[OutRecord], done: Done | None = None) -> None: ...

    async def close(self, partitions: Iterable[TopicPartition] | None = None) -> None: ...


class Publisher:
    """Sends output records and returns only once Kafka acknowledged every one of them.

    Guarantees: :meth:`publish` returns when all records are acknowledged (acks=all with an
    idempotent producer), so offsets may then be committed. Failed sends are retried with
    backoff for as long as it takes; meanwhile the caller's work stays in flight, which is the
    back-pressure that stalls consumption when the output cannot be written.

    Too large: a record is declared too large only when it was refused on its own (by the
    client's ``max_request_size`` check, or by the broker in a batch of its own); it is then
    replaced by a small ``too_large`` ErrorRecord, and that one, if refused too, by the minimal
    one (id and error type). When the broker refuses a whole batch as too large, its records are
    sent again one per batch, and later batches are kept under the refused size. Only a topic
    that refuses even the minimal record (a ``max.message.bytes`` of a few hundred bytes) stalls,
    with a ``publish.unpublishable`` error line: an output is never dropped.

    An idempotent aiokafka producer cannot recover from a broken sequence (for example
    ``OutOfOrderSequenceNumber`` after a broker restart lost its last batches): its sender stops
    for good. When that happens, or sends keep failing, the publisher replaces the producer
    with a fresh one (a new producer id) and resends -- at least once, never lost. A
    replacement that cannot start (the brokers are down) is tried again after the next failed
    round; the service keeps running. The replaced producer is closed with ``close``, which
    must not leave anything of it running.
    """

    def __init__(
        self,
        producer: Any,
        encoder: OutputEncoder,
        *,
        max_request_size: int,
        renew: Callable[[], Awaitable[Any]] | None = None,
        close: Close | None = None,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        on_failed: Callable[[int], None] | None = None,
        on_renewed: Callable[[], None] | None = None,
    ) -> None:
        self.producer = producer
        self._encoder = encoder
        self._max_request_size = max_request_size
        self._renew = renew
        self._close = close
        self._ack_timeout_s = ack_timeout_s
        self._on_failed = on_failed
        self._on_renewed = on_renewed
        self._renewing = asyncio.Lock()
        self._rng = random.Random()
        self._log = structlog.get_logger("stream_service.publish")
        self.failures = 0
        self._last_retry_log = float("-inf")
        self._held_back = 0  # records retried since the last publish.retry line
        self._partitions: dict[str, list[int]] = {}  # topic -> partition ids, for batched sends
        self.batch_cap_bytes = max_request_size  # lowered when the broker refuses a batch as too large

    fences = False  # at least once: nothing to fence, positions come from the group as usual

    def bind(self, *, replay: Replay, on_lost: Callable[[TopicPartition], None]) -> None:
        """Nothing to bind: at least once never reads a partition again by itself."""

    async def prepare(self, states: Iterable[tuple[TopicPartition, PartitionState]]) -> None:
        """Nothing to prepare: one producer serves every partition."""

    def rebind(self, tp: TopicPartition, state: PartitionState) -> None:
        """Nothing is kept per partition."""

    async def close(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Nothing is kept per partition (the service closes the producer itself)."""

    def _shrink(self, rec: OutRecord) -> bool:
        """Replace a record refused on its own; False when it is minimal already (it cannot shrink)."""
        if rec.minimal:
            return False
        if rec.error_type == "too_large":
            item = rec.item
            small = self._encoder.minimal(item, item.request.id if item.request else None, "too_large")
        else:
            small = self._encoder.too_large(rec, self._max_request_size)
        rec.topic, rec.key, rec.value, rec.headers = small.topic, small.key, small.value, small.headers
        rec.error_type, rec.outcome, rec.minimal = small.error_type, small.outcome, small.minimal
        return True

    async def _renew_producer(self, broken: Any, error: BaseException | None) -> None:
        if self._renew is None:
            return
        async with self._renewing:
            if self.producer is not broken:
                return  # another batch already replaced it
            self._log.warning("producer.renew", error=f"{type(error).__name__}: {error}")
            try:
                fresh = await self._renew()
            except (KafkaError, OSError, TimeoutError) as exc:
                # The brokers are still out of reach: keep the old one, try again after a round.
                self._log.warning("producer.renew_failed", error=f"{type(exc).__name__}: {exc}")
                return
            self.producer = fresh
            if self._on_renewed is not None:
                self._on_renewed()
            if self._close is not None:
                await self._close(broken)  # its unsent batches are sent again by us

    async def _send_one(self, producer: Any, rec: OutRecord, partition: int | None = None) -> SendResult:
        send = producer.send
        try:
            # ``partition`` when already chosen by the same partitioner: saves hashing the key twice
            fut: asyncio.Future[Any] = await send(
                rec.topic, rec.value, key=rec.key, headers=rec.headers, partition=partition
            )
        except MessageSizeTooLargeError as exc:
            error: BaseException = exc
            if not self._shrink(rec):  # over the producer's own max_request_size
                return error
            return await self._send_one(producer, rec)
        except KafkaError as exc:  # e.g. metadata for the topic not available in time
            error = exc
            return error
        return fut

    async def _send_alone(self, producer: Any, rec: OutRecord) -> SendResult:
        """Send ``rec`` in a batch of its own, so a refusal as too large is about it alone."""
        if not hasattr(producer, "create_batch"):
            return await self._send_one(producer, rec)
        parts = await self._partitions_of(producer, rec.topic)
        if isinstance(parts, BaseException):
            return parts
        batch = producer.create_batch()
        if batch.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers) is None:
            return await self._send_one(producer, rec)  # larger than a batch: the client's check decides
        batch.close()  # complete: aiokafka sends a closed batch without waiting out linger_ms
        try:
            fut: asyncio.Future[Any] = await producer.send_batch(
                batch, rec.topic, partition=_partition(rec.key, parts)
            )
        except KafkaError as exc:
            error: BaseException = exc
            return error
        return fut

    async def _partitions_of(self, producer: Any, topic: str) -> list[int] | BaseException:
        parts = self._partitions.get(topic)
        if parts is None:
            try:
                parts = self._partitions[topic] = sorted(await producer.partitions_for(topic))
            except KafkaError as exc:
                error: BaseException = exc
                return error
        return parts

    async def _send_batched(self, producer: Any, records: Sequence[OutRecord]) -> list[SendResult]:
        """Send records as whole per-partition batches: one future per batch, not per record.

        Partitions are chosen as the producer would (murmur2 of the key), so results keyed by
        request id land where any Kafka client would put them. Records larger than
        ``BATCHED_RECORD_MAX_BYTES`` go one by one, so an oversized one fails alone, and so do
        partitions with fewer than ``BATCHED_MIN_RECORDS`` records: aiokafka queues a submitted
        batch behind the partition's pending one, which only pays off for large groups. A batch
        is closed before it passes ``batch_cap_bytes``.
        """
        out: list[SendResult | None] = [None] * len(records)
        groups: dict[tuple[str, int], list[int]] = {}
        known = self._partitions
        for i, rec in enumerate(records):  # hot: once per output record
            parts = known.get(rec.topic) or await self._partitions_of(producer, rec.topic)
            if isinstance(parts, BaseException):
                out[i] = parts
            elif len(rec.value) > BATCHED_RECORD_MAX_BYTES:
                out[i] = await self._send_one(producer, rec)
            else:
                key = rec.key
                partition = (
                    parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
                    if key is not None
                    else random.choice(parts)
                )
                group = groups.get((rec.topic, partition))
                if group is None:
                    groups[(rec.topic, partition)] = [i]
                else:
                    group.append(i)
        cap = self.batch_cap_bytes
        for (topic, partition), indexes in groups.items():
            if len(indexes) < BATCHED_MIN_RECORDS:
                # A few records: append them to the producer's open batch for the partition
                # (send_batch would wait until the partition's pending batch has been sent).
                for i in indexes:
                    out[i] = await self._send_one(producer, records[i], partition)
                continue
            batch = producer.create_batch()
            members: list[int] = []
            for i in indexes:
                rec = records[i]
                full = members and batch.size() + len(rec.value) + RECORD_OVERHEAD_BYTES > cap
                if (
                    full
                    or batch.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers) is None
                ):
                    await submit_batch(producer, batch, topic, partition, members, out)
                    batch, members = producer.create_batch(), []
                    batch.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers)
                members.append(i)
            await submit_batch(producer, batch, topic, partition, members, out)
        return [f if f is not None else KafkaError("not sent") for f in out]

    async def _acknowledgements(self, futures: list[asyncio.Future[Any]]) -> dict[int, object]:
        """Each future's result or exception, by id; one still pending after the ack timeout counts
        as failed (a producer stopped mid-flight may never settle its futures)."""
        if futures:
            await asyncio.wait(futures, timeout=self._ack_timeout_s)
        acks: dict[int, object] = {}
        for fut in futures:
            if not fut.done():
                acks[id(fut)] = KafkaTimeoutError(f"no acknowledgement within {self._ack_timeout_s:g} s")
            elif fut.cancelled():
                acks[id(fut)] = KafkaError("the send was cancelled")
            else:
                acks[id(fut)] = fut.exception() or fut.result()
        return acks

    async def publish(self, records: Sequence[OutRecord], done: Done | None = None) -> None:
        await self._publish(records)
        if done is not None:
            done(list(records))

    async def _publish(self, records: Sequence[OutRecord]) -> None:
        pending = list(records)
        alone: set[int] = set()  # ids of records to send in a batch of their own
        backoff = PUBLISH_BACKOFF_INITIAL_S
        failed_rounds = 0
        while pending:
            producer = self.producer
            if failed_rounds == 0 and not alone and hasattr(producer, "create_batch"):
                futures = await self._send_batched(producer, pending)
            else:
                futures = [
                    await (
                        self._send_alone(producer, rec) if id(rec) in alone else self._send_one(producer, rec)
                    )
                    for rec in pending
                ]
            sent_alone, alone = alone, set()
            unique = {id(f): f for f in futures if isinstance(f, asyncio.Future)}
            done = await self._acknowledgements(list(unique.values()))
            if not any(isinstance(ack, BaseException) for ack in done.values()) and all(
                isinstance(f, asyncio.Future) for f in futures
            ):
                return  # the common case: every record acknowledged
            shared = _shared(pending, futures)
            failed: list[OutRecord] = []
            first_error: BaseException | None = None
            fatal = too_large_only = False
            for rec, f in zip(pending, futures, strict=True):
                outcome = f if isinstance(f, BaseException) else done[id(f)]
                if not isinstance(outcome, BaseException):
                    continue
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                failed.append(rec)
                if isinstance(outcome, TOO_LARGE_ERRORS):
                    self._too_large(rec, f, shared.get(id(f)), sent_alone, alone)
                    continue
                fatal = fatal or isinstance(outcome, FATAL_PRODUCER_ERRORS)
                first_error = first_error or outcome
            if not failed:
                return
            pending = failed
            too_large_only = first_error is None
            if too_large_only:
                continue  # sent again at once: alone, or replaced by a smaller record
            failed_rounds += 1
            self._retrying(failed, first_error, backoff)
            if fatal or failed_rounds >= RENEW_AFTER_FAILED_ROUNDS:
                await self._renew_producer(producer, first_error)
                failed_rounds = 0
            await asyncio.sleep(self._rng.uniform(backoff / 2, backoff))  # backoff, not synchronisation
            backoff = min(PUBLISH_BACKOFF_MAX_S, backoff * 2)

    def _too_large(
        self, rec: OutRecord, sent: SendResult, batch_bytes: int | None, sent_alone: set[int], alone: set[int]
    ) -> None:
        """Refused as too large: send it alone next, or, when it was alone, replace it.

        ``batch_bytes`` is the size of the batch it was refused in, None when it was not in one
        of ours (``send()`` may still have batched it with others on the wire)."""
        if batch_bytes is not None or (id(rec) not in sent_alone and hasattr(self.producer, "create_batch")):
            alone.add(id(rec))  # refused with others: the refusal may not be about it
            if batch_bytes is not None:
                self._lower_cap(batch_bytes)
            return
        if not self._shrink(rec):
            self._log.error(
                "publish.unpublishable",
                topic=rec.topic,
                bytes=len(rec.value),
                hint="the topic refuses even a minimal record: raise its max.message.bytes",
            )

    def _lower_cap(self, refused_bytes: int) -> None:
        """Keep later batches under half of what the broker refused."""
        cap = max(MIN_BATCH_CAP_BYTES, refused_bytes // 2)
        if cap < self.batch_cap_bytes:
            self.batch_cap_bytes = cap
            self._log.warning("publish.batch_cap_lowered", batch_cap_bytes=cap)

    def _retrying(self, failed: list[OutRecord], error: BaseException | None, backoff: float) -> None:
        self.failures += len(failed)
        if self._on_failed is not None:
            self._on_failed(len(failed))
        self._held_back += len(failed)
        now = time.monotonic()
        if now - self._last_retry_log >= RETRY_LOG_INTERVAL_S:
            # Every batch in flight fails at once in an outage: one line per interval, with
            # the count of records retried since the last line, instead of one per batch.
            self._last_retry_log = now
            self._log.warning(
                "publish.retry",
                records=self._held_back,
                topic=failed[0].topic,
                error=f"{type(error).__name__}: {error}",
                backoff_s=round(backoff, 3),
            )
            self._held_back = 0


async def submit_batch(
    producer: Any, batch: Any, topic: str, partition: int, members: list[int], out: list[SendResult | None]
) -> None:
    """Hand a complete batch to the producer; its future (or the refusal) becomes ``out[i]`` of
    each member. The batch is closed first: aiokafka sends a closed batch at once instead of
    holding it for linger_ms in case send() adds records to it (up to 5 ms, for nothing)."""
    if not members:
        return
    result: SendResult
    batch.close()
    try:
        result = await producer.send_batch(batch, topic, partition=partition)
    except KafkaError as exc:
        result = exc
    for i in members:
        out[i] = result


def _shared(records: Sequence[OutRecord], futures: Sequence[SendResult]) -> dict[int, int]:
    """The futures that stand for more than one record (whole batches): id -> the batch's bytes."""
    count: dict[int, int] = {}
    size: dict[int, int] = {}
    for rec, f in zip(records, futures, strict=True):
        if isinstance(f, asyncio.Future):
            count[id(f)] = count.get(id(f), 0) + 1
            size[id(f)] = size.get(id(f), 0) + len(rec.value) + RECORD_OVERHEAD_BYTES
    return {key: size[key] for key, n in count.items() if n > 1}


def _partition(key: bytes | None, partitions: list[int]) -> int:
    """Where the producer would put ``key`` (a record without a key goes anywhere)."""
    return partition_of(key, partitions) if key is not None else random.choice(partitions)
