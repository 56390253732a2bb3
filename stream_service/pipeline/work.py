"""The unit of work flowing through the pipeline, and the per-partition state it belongs to."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from stream_service.pipeline.offsets import OffsetTracker
from stream_service.pipeline.order import KeyGate

if TYPE_CHECKING:
    from stream_service.messages import Request
    from stream_service.observability.tracing import RequestTrace
    from stream_service.pipeline.decode import DecodeFailure
    from stream_service.pipeline.encode import OutRecord


class PartitionState:
    """Everything kept for one assigned partition; a fresh one is made on every assignment.

    Work items hold a reference to the state they were consumed under, so a completion that
    arrives after the partition was revoked updates a discarded object and cannot corrupt the
    tracking of a later assignment of the same partition. The counters and the tracker are
    written only by :class:`~stream_service.pipeline.ledger.Ledger`; the key gate only by
    :class:`~stream_service.pipeline.admit.Admission`.
    """

    __slots__ = (
        "topic", "partition", "tracker", "gate", "queued", "in_flight", "consumed", "revoked", "forgotten",
    )  # fmt: skip

    def __init__(self, topic: str, partition: int, *, ordered: bool) -> None:
        self.topic = topic
        self.partition = partition
        self.tracker = OffsetTracker()
        self.gate: KeyGate[WorkItem] | None = KeyGate() if ordered else None
        self.queued = 0  # consumed, waiting for a gate or the scheduler
        self.in_flight = 0  # dispatched or answered, output not yet acknowledged
        self.consumed = 0  # records taken from this partition (each item's ``seq`` is its rank)
        self.revoked = False  # no longer admitting: waiting work was dropped
        self.forgotten = False  # released by the ledger: nothing of it will be committed

    def __repr__(self) -> str:
        return (
            f"PartitionState({self.topic}[{self.partition}] queued={self.queued} in_flight={self.in_flight})"
        )


class WorkItem:
    """One consumed record on its way to an output. ``failure`` is set when it could not be decoded."""

    __slots__ = (
        "state",
        "offset",
        "key",
        "timestamp_ms",
        "size",
        "request",
        "failure",
        "tenant",
        "priority",
        "cache_key",
        "gated",
        "scheduled",
        "running",
        "answer",
        "seq",
        "trace",
    )

    def __init__(
        self,
        state: PartitionState,
        offset: int,
        key: Hashable | None,
        timestamp_ms: int,
        size: int,
        request: Request | None,
        failure: DecodeFailure | None,
    ) -> None:
        self.state = state
        self.offset = offset
        self.key = key
        self.timestamp_ms = timestamp_ms
        self.size = size
        self.request = request
        self.failure = failure
        self.tenant = request.tenant if request is not None else "default"
        self.priority = request.priority if request is not None else 0
        self.cache_key: bytes | None = None
        self.gated = False  # holds its key gate; must release it when done
        self.scheduled = False  # went through the scheduler; holds a tenant in-flight slot
        self.running = False  # left the queue: dispatched, or answered without running
        self.answer: OutRecord | None = None  # answered without running (bad input, over quota)
        self.seq = 0  # its rank among the records of its partition state, set by the ledger
        self.trace: RequestTrace | None = None  # its request span, with tracing on (set by Admission)
