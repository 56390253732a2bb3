"""Transact: exactly-once delivery. Outputs and the input offsets they answer commit atomically.

One transactional producer per input partition (transactional id ``<prefix>-<group>-<topic>-<p>``:
the scheme Kafka Streams used before KIP-447, which aiokafka lacks). The new owner of a
partition fences the old one when it starts its producer (``init_transactions``), so a zombie
that lost the partition can no longer commit.

Within a partition, outputs enter the open transaction in input order (each output waits in the
partition's outbox until every earlier input's output is in), so a transaction always holds the
outputs of exactly the inputs before the offset it commits: processing still runs concurrently,
only the hand-over to the producer is ordered. A transaction spans many micro-batches; the
commit loop commits every ``delivery.transaction_interval_ms`` or ``transaction_max_records``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced

from stream_service.pipeline.encode import OutputEncoder, OutRecord
from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.publish import Done, SendResult
from stream_service.pipeline.transact_send import TxnSender
from stream_service.pipeline.transact_state import TxnPartition, error_text
from stream_service.pipeline.work import PartitionState

FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch)  # another instance owns the partition now
START_RETRY_S = 1.0  # between attempts to start a partition's producer while brokers are away
ABORT_TIMEOUT_S = 10.0  # an abort that does not finish by then closes the producer instead

StartProducer = Callable[[str], Awaitable[Any]]  # transactional id -> a started producer
Replay = Callable[[TopicPartition, int | None], Awaitable[None]]  # partition, offset to read again


class Transactions:
    """Publishes outputs in per-partition transactions and commits them with their offsets.

    Guarantees: :meth:`publish` returns once each output is in its partition's open transaction
    and acknowledged (not yet committed), or was discarded because that partition's work will
    be done again (it was revoked, replayed or fenced). :meth:`commit` commits, per partition,
    the open transaction with ``offset = last input handed over + 1`` through
    ``send_offsets_to_transaction``: committed outputs and committed offsets always match.
    A failed transaction is aborted and ``replay`` is told to read the partition again from
    its last committed offset (the in-memory state of those records is rebuilt); a fenced
    producer (another instance owns the partition now) discards everything of the partition
    and ``on_lost`` is told. A record larger than the output topics accept is replaced by a
    too_large error before it is sent (a refused record would spoil the whole transaction).
    """

    def __init__(
        self,
        *,
        start_producer: StartProducer,
        close_producer: Callable[[Any], Awaitable[None]],
        encoder: OutputEncoder,
        ledger: Ledger,
        group_id: str,
        txn_id_prefix: str,
        max_record_bytes: int,
        batch_bytes: int | None = None,
        on_committed: Callable[[int, float], None] | None = None,
        on_aborted: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._start_producer = start_producer
        self._close_producer = close_producer
        self._ledger = ledger
        self._group_id = group_id
        self._prefix = txn_id_prefix
        self._sender = TxnSender(encoder, max_record_bytes, batch_bytes=batch_bytes)
        self._on_committed = on_committed
        self._on_aborted = on_aborted
        self._clock = clock
        self._replay: Replay | None = None
        self._on_lost: Callable[[TopicPartition], None] | None = None
        self._partitions: dict[TopicPartition, TxnPartition] = {}
        self._log = structlog.get_logger("stream_service.transact")

    @property
    def max_record_bytes(self) -> int:
        """Outputs larger than this are replaced by a too_large error (the service lowers it to
        the output topics' ``max.message.bytes`` at startup)."""
        return self._sender.max_record_bytes

    @max_record_bytes.setter
    def max_record_bytes(self, limit: int) -> None:
        self._sender.max_record_bytes = limit

    fences = True  # a new owner reads from the committed offset once its producers fenced the old one

    def bind(self, *, replay: Replay, on_lost: Callable[[TopicPartition], None]) -> None:
        """The engine's hooks: read a partition again; stop fetching a partition we lost."""
        self._replay, self._on_lost = replay, on_lost

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"{self._prefix}-{self._group_id}-{tp.topic}-{tp.partition}"

    # -------------------------------------------------------------------------- partitions

    async def prepare(self, states: Iterable[tuple[TopicPartition, PartitionState]]) -> None:
        """Start the producers of newly assigned partitions; this fences their previous owners."""
        fresh = [TxnPartition(tp, self.transactional_id(tp), state) for tp, state in states]
        for part in fresh:
            self._partitions[part.tp] = part
        async with asyncio.TaskGroup() as group:
            for part in fresh:
                group.create_task(self._start(part))

    async def _start(self, part: TxnPartition) -> None:
        while True:
            try:
                part.producer = await self._start_producer(part.txn_id)
            except (KafkaError, OSError, TimeoutError) as exc:
                self._log.warning(
                    "transaction.producer_start_failed", txn_id=part.txn_id, error=error_text(exc)
                )
                await asyncio.sleep(START_RETRY_S)  # a backoff while the brokers are away
            else:
                return

    def rebind(self, tp: TopicPartition, state: PartitionState) -> None:
        """The partition's state was made afresh (replay, offset reset): outputs restart at seq 0."""
        part = self._partitions.get(tp)
        if part is not None:
            self._discard(part)
            part.state, part.next_seq, part.last_released, part.in_txn = state, 0, None, 0

    async def close(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Revoked partitions (after :meth:`commit`; None: all, at shutdown): abort what is still
        open, close the producers."""
        for tp in list(self._partitions) if partitions is None else partitions:
            part = self._partitions.pop(tp, None)
            if part is None:
                continue
            async with part.lock:
                part.dead = True
                self._discard(part)
                if part.open:
                    await self._abort(part, "revoked")
                if part.producer is not None:
                    await self._close_producer(part.producer)

    # -------------------------------------------------------------------------- publishing

    async def publish(self, records: Sequence[OutRecord], done: Done | None = None) -> None:
        """Put ``records`` into their partitions' transactions; ``done`` hears of each group as it is
        acknowledged or discarded (an output waiting for an earlier input must not hold the
        others: that earlier input may be waiting for one of their key gates)."""
        loop = asyncio.get_running_loop()
        owner: dict[asyncio.Future[bool], OutRecord] = {}
        discarded: list[OutRecord] = []
        touched: dict[TopicPartition, TxnPartition] = {}
        for rec in records:
            state = rec.item.state
            part = self._partitions.get(TopicPartition(state.topic, state.partition))
            if part is None or part.dead or part.state is not state:
                discarded.append(rec)  # its partition's work is done again: the output is not wanted
                continue
            ack: asyncio.Future[bool] = loop.create_future()
            part.waiting[rec.item.seq] = (rec, ack)
            owner[ack] = rec
            touched[part.tp] = part
        if discarded and done is not None:
            done(discarded)
        for part in touched.values():
            await self._hand_over(part)
        pending = set(owner)
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failed: dict[TopicPartition, BaseException] = {}
            for ack in finished:
                error = ack.exception()
                if error is not None:
                    state = owner[ack].item.state
                    failed.setdefault(TopicPartition(state.topic, state.partition), error)
            for tp, error in failed.items():
                await self._failed(tp, error)  # discards what waits: those acks finish too
            if done is not None:
                done([owner[ack] for ack in finished])

    async def _failed(self, tp: TopicPartition, error: BaseException) -> None:
        part = self._partitions.get(tp)
        if part is None or part.dead:
            return
        if isinstance(error, FENCED_ERRORS):
            self._lost(part, error)
        else:
            await self._fail(part, f"an output could not be written: {error_text(error)}")

    async def _hand_over(self, part: TxnPartition) -> None:
        """Put the outputs that are next in input order into the open transaction."""
        async with part.lock:
            if part.dead or part.producer is None:
                return
            chunk: list[tuple[OutRecord, asyncio.Future[bool]]] = []
            while part.next_seq in part.waiting:
                chunk.append(part.waiting.pop(part.next_seq))
                part.next_seq += 1
            if not chunk:
                return
            results: list[SendResult]
            try:
                if not part.open:
                    await part.producer.begin_transaction()
                    part.begin(self._clock())
                results = await self._sender.send(part.producer, [rec for rec, _ in chunk])
            except KafkaError as exc:
                results = [exc] * len(chunk)
            acks: dict[int, list[asyncio.Future[bool]]] = {}
            for (rec, ack), sent in zip(chunk, results, strict=True):
                if isinstance(sent, BaseException):
                    part.send_error = part.send_error or error_text(sent)  # never committed now
                    ack.set_exception(sent)  # publish() aborts (or, fenced, gives the partition up)
                    continue
                part.in_txn += 1
                part.last_released = rec.item.offset
                waiting = acks.get(id(sent))
                if waiting is None:
                    waiting = acks[id(sent)] = []
                    part.unsettled += 1
                    sent.add_done_callback(functools.partial(part.sent, part.generation))
                    sent.add_done_callback(functools.partial(_settle, waiting))
                waiting.append(ack)  # a batch's records share its future

    # -------------------------------------------------------------------------- committing

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> bool:
        """Commit the open transaction of the given (default: every) partition with its offsets."""
        chosen = [
            self._partitions[tp] for tp in (partitions or list(self._partitions)) if tp in self._partitions
        ]
        results: list[bool] = []
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._commit(part)) for part in chosen]
        results = [task.result() for task in tasks]
        return all(results)

    async def _commit(self, part: TxnPartition) -> bool:
        failure = await self._commit_open(part)
        if failure is not None:
            await self._fail(part, f"the commit failed: {failure}")
            return False
        await self._hand_over(part)  # what waited during the commit opens the next transaction
        return not part.dead

    async def _commit_open(self, part: TxnPartition) -> str | None:
        """Commit the open transaction; the reason when it failed (None when it did not fail)."""
        async with part.lock:
            if part.dead or not part.open or part.last_released is None:
                self._release_committed(part)
                return None
            offset = part.last_released + 1
            count = part.in_txn
            started = self._clock()
            if (unsent := await part.settle()) is not None:
                return f"an output of the transaction was not written: {unsent}"
            try:
                await part.producer.send_offsets_to_transaction({part.tp: offset}, self._group_id)
                await part.producer.commit_transaction()
            except FENCED_ERRORS as exc:
                self._lost(part, exc)
                return None
            except KafkaError as exc:
                return error_text(exc)
            part.open, part.committed = False, offset
            self._release_committed(part)
            if self._on_committed is not None:
                self._on_committed(count, self._clock() - started)
            return None

    def _release_committed(self, part: TxnPartition) -> None:
        """Tell the ledger what the last commit covered (records acknowledged since count now)."""
        if part.committed is None or part.state.forgotten:
            return
        point = part.state.tracker.commit_point()
        if point is not None and point.offset <= part.committed:
            self._ledger.committed({part.tp: (part.state, point)})

    # -------------------------------------------------------------------------- failures

    async def _fail(self, part: TxnPartition, why: str) -> None:
        """Abort the partition's transaction and read its uncommitted inputs again."""
        async with part.lock:
            if part.dead:
                return
            if part.open:
                await self._abort(part, why)
            if part.dead:
                return  # fenced while aborting
            if part.producer is None:
                await self._start(part)
        # The engine forgets the partition's state first, then rebind() discards what waited:
        # outputs that come back discarded belong to a state nothing commits any more.
        if self._replay is not None:
            await self._replay(part.tp, part.committed)
        else:
            self._discard(part)

    async def _abort(self, part: TxnPartition, why: str) -> None:
        part.open = False
        if part.producer is None:
            return
        self._log.warning("transaction.aborted", txn_id=part.txn_id, reason=why)
        if self._on_aborted is not None:
            self._on_aborted(why)
        try:
            async with asyncio.timeout(ABORT_TIMEOUT_S):
                await part.producer.abort_transaction()
        except FENCED_ERRORS as exc:
            self._lost(part, exc)
        except (KafkaError, TimeoutError) as exc:
            # The producer cannot abort (brokers away, fatal state): a new one with the same
            # transactional id aborts the transaction when it starts.
            self._log.warning("transaction.abort_failed", txn_id=part.txn_id, error=error_text(exc))
            producer, part.producer = part.producer, None
            await self._close_producer(producer)

    def _lost(self, part: TxnPartition, exc: BaseException) -> None:
        part.dead = True
        self._discard(part)
        self._log.warning(
            "transaction.fenced",
            txn_id=part.txn_id,
            error=error_text(exc),
            hint="another instance owns the partition now; its work here is discarded",
        )
        if self._on_lost is not None:
            self._on_lost(part.tp)

    def _discard(self, part: TxnPartition) -> None:
        """Outputs still waiting will not be sent: their inputs are read again (or elsewhere)."""
        for _, ack in part.waiting.values():
            if not ack.done():
                ack.set_result(False)
        part.waiting.clear()


def _settle(acks: list[asyncio.Future[bool]], sent: asyncio.Future[Any]) -> None:
    error = KafkaError("the send was cancelled") if sent.cancelled() else sent.exception()
    for ack in acks:
        if ack.done():
            continue  # discarded meanwhile (the partition is read again)
        if error is not None:
            ack.set_exception(error)
        else:
            ack.set_result(True)
