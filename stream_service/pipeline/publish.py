"""Publish: encode results and errors with lineage headers, send them, and await their acknowledgement."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import structlog
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
from aiokafka.partitioner import DefaultPartitioner

from stream_service.errors import OutputTooLarge
from stream_service.messages import ErrorRecord, Result
from stream_service.observability.metrics import Metrics
from stream_service.pipeline.work import WorkItem
from stream_service.wire import (
    CONTENT_TYPE,
    CONTENT_TYPES,
    REQUEST_ID,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    TENANT,
    Encoding,
)

Headers = list[tuple[str, bytes]]

PUBLISH_BACKOFF_INITIAL_S = 0.2
PUBLISH_BACKOFF_MAX_S = 5.0
PRODUCER_STOP_TIMEOUT_S = 5.0
RETRY_LOG_INTERVAL_S = 1.0  # at most one publish.retry line per interval
RENEW_AFTER_FAILED_ROUNDS = 4  # consecutive failed rounds of one batch before the producer is replaced

# The producer's sender dies on these; only a new producer (new producer id) gets going again.
FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)
TOO_LARGE_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError)
DEFAULT_ACK_TIMEOUT_S = 90.0  # beyond the producer's own request timeout: it should have answered
BATCHED_MIN_RECORDS = 64  # records for one partition worth a batch of their own
BATCHED_RECORD_MAX_BYTES = 64 * 1024  # larger outputs are sent one by one (an oversized one fails alone)


class OutRecord:
    """One record to publish: where, what, and the lineage that ties it to its input."""

    __slots__ = ("topic", "key", "value", "headers", "item", "error_type", "outcome")

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        item: WorkItem,
        error_type: str | None = None,
    ):
        self.topic = topic
        self.error_type = error_type  # None for a Result
        self.outcome = "success" if error_type is None else "error"  # or "cached", set by the encoder
        self.key = key
        self.value = value
        self.headers = headers
        self.item = item


class OutputEncoder:
    """Turns outcomes into :class:`OutRecord` s: results keyed by request id, errors beside them.

    Every record carries ``source-topic``, ``source-partition``, ``source-offset`` and
    ``content-type``, plus ``request-id`` and ``tenant`` when known, so any output can be traced
    to its input and every input proven answered.
    """

    def __init__(self, *, results_topic: str, errors_topic: str, encoding: Encoding) -> None:
        self.results_topic = results_topic
        self.errors_topic = errors_topic
        self._encode: Callable[[Any], bytes] = (
            msgspec.json.Encoder().encode if encoding == "json" else msgspec.msgpack.Encoder().encode
        )
        self._content_type = CONTENT_TYPES[encoding].encode()
        self._tenants: dict[str, tuple[str, bytes]] = {}  # tenant -> its header, built once
        self._prefixes: dict[tuple[str, int], Headers] = {}  # input partition -> its lineage headers

    def headers(self, item: WorkItem, request_id: str | None, tenant: str | None) -> Headers:
        # Hot path (once per output): the per-partition headers are built once per partition.
        state = item.state
        where = (state.topic, state.partition)
        prefix = self._prefixes.get(where)
        if prefix is None:
            prefix = self._prefixes[where] = [
                (SOURCE_TOPIC, state.topic.encode()),
                (SOURCE_PARTITION, b"%d" % state.partition),
                (CONTENT_TYPE, self._content_type),
            ]
        headers = prefix + [(SOURCE_OFFSET, b"%d" % item.offset)]
        if request_id is not None:
            headers.append((REQUEST_ID, request_id.encode()))
        if tenant is not None:
            header = self._tenants.get(tenant)
            if header is None:
                header = self._tenants[tenant] = (TENANT, tenant.encode())
            headers.append(header)
        return headers

    def result(self, item: WorkItem, result: Result) -> OutRecord:
        key = result.id.encode()
        rec = OutRecord(
            self.results_topic, key, self._encode(result), self.headers(item, result.id, result.tenant), item
        )
        if result.cached:
            rec.outcome = "cached"
        return rec

    def error(self, item: WorkItem, record: ErrorRecord) -> OutRecord:
        key = record.id.encode() if record.id is not None else None
        return OutRecord(
            self.errors_topic,
            key,
            self._encode(record),
            self.headers(item, record.id, record.tenant),
            item,
            record.error_type,
        )

    def too_large(self, out: OutRecord, limit_bytes: int) -> OutRecord:
        """A small ErrorRecord standing in for an output the producer refused as too large."""
        req = out.item.request
        error = OutputTooLarge(
            f"the {out.topic} record is {len(out.value)} bytes, over kafka.producer_max_request_size="
            f"{limit_bytes}; shorten the output or raise the limit (and the topic's max.message.bytes)"
        )
        record = ErrorRecord(
            id=req.id if req else None,
            error=str(error),
            error_type=error.error_type,
            attempts=1,
            tenant=req.tenant if req else None,
            profile_name=req.profile_name if req else None,
            metadata=req.metadata if req else {},
        )
        return self.error(out.item, record)


class Publisher:
    """Sends output records and returns only once Kafka acknowledged every one of them.

    Guarantees: :meth:`publish` returns when all records are acknowledged (acks=all with an
    idempotent producer), so offsets may then be committed. Failed sends are retried with
    backoff for as long as it takes; meanwhile the caller's work stays in flight, which is the
    back-pressure that stalls consumption when the output cannot be written. A record larger
    than the producer or the topic accepts is replaced by a small ``too_large`` ErrorRecord.

    An idempotent aiokafka producer cannot recover from a broken sequence (for example
    ``OutOfOrderSequenceNumber`` after a broker restart lost its last batches): its sender stops
    for good. When that happens, or sends keep failing, the publisher replaces the producer
    with a fresh one (a new producer id) and resends -- at least once, never lost.
    """

    def __init__(
        self,
        producer: Any,
        encoder: OutputEncoder,
        *,
        max_request_size: int,
        renew: Callable[[], Awaitable[Any]] | None = None,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        metrics: Metrics | None = None,
    ) -> None:
        self.producer = producer
        self._metrics = metrics if metrics is not None else Metrics(enabled=False)
        self._encoder = encoder
        self._max_request_size = max_request_size
        self._renew = renew
        self._ack_timeout_s = ack_timeout_s
        self._renewing = asyncio.Lock()
        self._rng = random.Random()
        self._log = structlog.get_logger("stream_service.publish")
        self.failures = 0
        self._last_retry_log = float("-inf")
        self._held_back = 0  # records retried since the last publish.retry line
        self._partitions: dict[str, list[int]] = {}  # topic -> partition ids, for batched sends
        self._partitioner = DefaultPartitioner()

    def _shrink(self, rec: OutRecord) -> None:
        small = self._encoder.too_large(rec, self._max_request_size)
        rec.topic, rec.key, rec.value, rec.headers = small.topic, small.key, small.value, small.headers
        rec.error_type, rec.outcome = small.error_type, small.outcome

    async def _renew_producer(self, broken: Any, error: BaseException | None) -> None:
        if self._renew is None:
            return
        async with self._renewing:
            if self.producer is not broken:
                return  # another batch already replaced it
            self._log.warning("producer.renew", error=f"{type(error).__name__}: {error}")
            self.producer = await self._renew()
            self._metrics.producer_replacements_total.inc()
            try:
                async with asyncio.timeout(PRODUCER_STOP_TIMEOUT_S):
                    await broken.stop()
            except (KafkaError, OSError, TimeoutError):
                pass  # it is broken already; its unsent batches are resent by us

    async def _send_one(
        self, producer: Any, rec: OutRecord, partition: int | None = None
    ) -> asyncio.Future[Any] | BaseException:
        send = producer.send
        try:
            # ``partition`` when already chosen by the same partitioner: saves hashing the key twice
            fut: asyncio.Future[Any] = await send(
                rec.topic, rec.value, key=rec.key, headers=rec.headers, partition=partition
            )
        except MessageSizeTooLargeError:
            self._shrink(rec)  # over the producer's own max_request_size
            try:
                fut = await send(rec.topic, rec.value, key=rec.key, headers=rec.headers)
            except KafkaError as exc:
                error: BaseException = exc
                return error
        except KafkaError as exc:  # e.g. metadata for the topic not available in time
            error = exc
            return error
        return fut

    async def _send_batched(
        self, producer: Any, records: Sequence[OutRecord]
    ) -> list[asyncio.Future[Any] | BaseException]:
        """Send records as whole per-partition batches: one future per batch, not per record.

        Partitions are chosen as the producer would (murmur2 of the key), so results keyed by
        request id land where any Kafka client would put them. Records larger than
        ``BATCHED_RECORD_MAX_BYTES`` go one by one, so an oversized one fails alone, and so do
        partitions with fewer than ``BATCHED_MIN_RECORDS`` records: aiokafka queues a submitted
        batch behind the partition's pending one, which only pays off for large groups.
        """
        out: list[asyncio.Future[Any] | BaseException | None] = [None] * len(records)
        groups: dict[tuple[str, int], list[int]] = {}
        partitioner = self._partitioner
        for i, rec in enumerate(records):
            parts = self._partitions.get(rec.topic)
            if parts is None:
                try:
                    parts = self._partitions[rec.topic] = sorted(await producer.partitions_for(rec.topic))
                except KafkaError as exc:
                    out[i] = exc
                    continue
            if len(rec.value) > BATCHED_RECORD_MAX_BYTES:
                out[i] = await self._send_one(producer, rec)
                continue
            groups.setdefault((rec.topic, partitioner(rec.key, parts, parts)), []).append(i)
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
                if batch.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers) is None:
                    await self._submit(producer, batch, topic, partition, members, out)
                    batch, members = producer.create_batch(), []
                    batch.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers)
                members.append(i)
            await self._submit(producer, batch, topic, partition, members, out)
        return [f if f is not None else KafkaError("not sent") for f in out]

    @staticmethod
    async def _submit(
        producer: Any,
        batch: Any,
        topic: str,
        partition: int,
        members: list[int],
        out: list[asyncio.Future[Any] | BaseException | None],
    ) -> None:
        if not members:
            return
        result: asyncio.Future[Any] | BaseException
        try:
            result = await producer.send_batch(batch, topic, partition=partition)
        except KafkaError as exc:
            result = exc
        for i in members:
            out[i] = result

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

    async def publish(self, records: Sequence[OutRecord]) -> None:
        pending = list(records)
        backoff = PUBLISH_BACKOFF_INITIAL_S
        failed_rounds = 0
        while pending:
            producer = self.producer
            futures: list[asyncio.Future[Any] | BaseException] = []
            if failed_rounds == 0 and hasattr(producer, "create_batch"):
                futures = await self._send_batched(producer, pending)
            else:
                # Retries go through send(), one future per record: the client refuses a record over
                # its max_request_size alone. (It still batches records per partition on the wire.)
                futures = [await self._send_one(producer, rec) for rec in pending]
            unique = list({id(f): f for f in futures if isinstance(f, asyncio.Future)}.values())
            done = await self._acknowledgements(unique)
            failed: list[OutRecord] = []
            first_error: BaseException | None = None
            fatal = False
            for rec, f in zip(pending, futures, strict=True):
                outcome = f if isinstance(f, BaseException) else done[id(f)]
                if isinstance(outcome, BaseException):
                    if isinstance(outcome, asyncio.CancelledError):
                        raise outcome
                    if isinstance(outcome, TOO_LARGE_ERRORS) and rec.error_type != "too_large":
                        self._shrink(rec)  # the broker (topic max.message.bytes) refused it
                    fatal = fatal or isinstance(outcome, FATAL_PRODUCER_ERRORS)
                    failed.append(rec)
                    first_error = first_error or outcome
            if not failed:
                return
            self.failures += len(failed)
            self._metrics.publish_failures_total.inc(len(failed))
            failed_rounds += 1
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
                    error=f"{type(first_error).__name__}: {first_error}",
                    backoff_s=round(backoff, 3),
                )
                self._held_back = 0
            if fatal or failed_rounds >= RENEW_AFTER_FAILED_ROUNDS:
                await self._renew_producer(producer, first_error)
                failed_rounds = 0
            await asyncio.sleep(self._rng.uniform(backoff / 2, backoff))  # backoff, not synchronisation
            backoff = min(PUBLISH_BACKOFF_MAX_S, backoff * 2)
            pending = failed
