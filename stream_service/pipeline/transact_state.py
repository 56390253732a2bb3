"""Transact, the state of one partition: its producer, its open transaction and that transaction's sends."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from stream_service.pipeline.encode import OutRecord
from stream_service.pipeline.work import PartitionState

# A commit first waits this long for the open transaction's sends to be acknowledged; by then the
# broker has aborted the transaction itself (aiokafka's transaction.timeout.ms is 60 s).
SETTLE_TIMEOUT_S = 60.0


class TxnPartition:
    """The transaction state of one input partition (one assignment of it).

    Guarantees: :meth:`settle` says a transaction may commit only when every send handed to it
    was acknowledged. aiokafka itself commits a transaction even when one of its sends failed (a
    failed batch does not make the transaction abortable, as it does in the Java client), which
    would commit offsets past outputs that were never written.
    """

    __slots__ = (
        "tp", "txn_id", "state", "producer", "lock", "waiting", "next_seq", "open", "in_txn",
        "opened_at", "last_released", "committed", "dead", "generation", "unsettled", "settled",
        "send_error",
    )  # fmt: skip

    def __init__(self, tp: TopicPartition, txn_id: str, state: PartitionState) -> None:
        self.tp = tp
        self.txn_id = txn_id
        self.state = state
        self.producer: Any = None
        self.lock = asyncio.Lock()  # a commit and a hand-over to the producer never interleave
        self.waiting: dict[int, tuple[OutRecord, asyncio.Future[bool]]] = {}  # seq -> output, its ack
        self.next_seq = 0  # the input (by arrival order) whose output enters the transaction next
        self.open = False
        self.in_txn = 0  # outputs in the open transaction
        self.opened_at = 0.0
        self.last_released: int | None = None  # input offset of the last output handed over
        self.committed: int | None = None  # the offset the last commit of ours stored
        self.dead = False  # revoked, fenced or replaced: nothing more of it is sent
        self.generation = 0  # which transaction a send belongs to (late acks of aborted ones)
        self.unsettled = 0  # sends of the open transaction not yet acknowledged
        self.settled: asyncio.Event | None = None  # set when unsettled drops to 0, while a commit waits
        self.send_error: str | None = None  # the first failed send of the open transaction

    def begin(self, now: float) -> None:
        """A new transaction is open: its sends are counted afresh."""
        self.open, self.in_txn, self.opened_at = True, 0, now
        self.generation += 1
        self.unsettled, self.settled, self.send_error = 0, None, None

    def sent(self, generation: int, sent: asyncio.Future[Any]) -> None:
        """A send of transaction ``generation`` finished (acknowledged, failed or cancelled)."""
        if generation != self.generation:
            return  # a send of a transaction already aborted
        self.unsettled -= 1
        if self.send_error is None and (sent.cancelled() or sent.exception() is not None):
            self.send_error = error_text(sent.exception() or KafkaError("the send was cancelled"))
        if self.unsettled == 0 and self.settled is not None:
            self.settled.set()

    async def settle(self) -> str | None:
        """Wait for the open transaction's sends; why it must not commit (None: it may)."""
        if self.unsettled:
            self.settled = asyncio.Event()
            try:
                async with asyncio.timeout(SETTLE_TIMEOUT_S):
                    await self.settled.wait()
            except TimeoutError:
                return f"{self.unsettled} outputs not acknowledged within {SETTLE_TIMEOUT_S:g} s"
            finally:
                self.settled = None
        return self.send_error


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
