"""Admit: the records of one ``getmany`` become work items: decoded, checked against the tenant
quota, and let through their key gate (or held behind an earlier record of the same key)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from stream_service.pipeline.answer import Answers
from stream_service.pipeline.decode import DecodeFailure, RequestDecoder
from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.publish import OutRecord
from stream_service.pipeline.quota import TenantQuota
from stream_service.pipeline.work import PartitionState, WorkItem
from stream_service.settings import Ordering
from stream_service.wire import CONTENT_TYPE

ORDER_BY_PARTITION = 0  # the single gate key used when ordering = partition


class Admitted(NamedTuple):
    """What admission made of a fetch: inputs answered at once, and requests ready to run."""

    answered: list[tuple[WorkItem, OutRecord]]
    ready: list[WorkItem]


class Admission:
    """Turns fetched records into work items; never raises for anything a record holds.

    Guarantees: every record of an assigned, not revoked partition is registered with the
    ledger and ends up in exactly one place: answered at once (it could not be decoded, or the
    tenant's quota rejected it), ready to run, or waiting behind its key gate until
    :meth:`release` of the previous item of its key. With ``ordering = key`` items of one key
    are let through in offset order; ``partition`` orders a whole partition; ``unordered``
    gates nothing. Records of partitions without state (fetched before a rebalance took them)
    are ignored: the next owner reads them again.
    """

    def __init__(
        self,
        ledger: Ledger,
        decoder: RequestDecoder,
        quota: TenantQuota,
        answers: Answers,
        *,
        ordering: Ordering,
        queued_of: Callable[[str], int],
    ) -> None:
        self._ledger = ledger
        self._decode = decoder.decode
        self._quota = quota
        self._answers = answers
        self._ordering = ordering
        self._queued_of = queued_of

    def take(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> Admitted:
        """Admit the records of one fetch."""
        answered: list[tuple[WorkItem, OutRecord]] = []
        ready: list[WorkItem] = []
        ledger = self._ledger
        states = ledger.states
        decode = self._decode
        ordering = self._ordering
        quota = self._quota if self._quota.active else None
        for tp, records in batch.items():
            state = states.get(tp)
            if state is None or state.revoked:
                continue  # fetched before a rebalance took the partition away: it is redelivered
            items: list[WorkItem] = []
            for rec in records:
                value = rec.value
                content_type = None
                if rec.headers:
                    for name, hval in rec.headers:
                        if name == CONTENT_TYPE:
                            content_type = hval.decode("latin-1")
                decoded = decode(value, content_type)
                size = len(value) if value is not None else 0
                if isinstance(decoded, DecodeFailure):
                    item = WorkItem(state, rec.offset, None, rec.timestamp, size, None, decoded)
                else:
                    key = (
                        rec.key
                        if ordering == "key"
                        else ORDER_BY_PARTITION
                        if ordering == "partition"
                        else None
                    )
                    item = WorkItem(state, rec.offset, key, rec.timestamp, size, decoded, None)
                items.append(item)
            ledger.consumed(items)
            self._route(state, items, quota, answered, ready)
        if answered:
            ledger.started(item for item, _ in answered)
        return Admitted(answered, ready)

    def _route(
        self,
        state: PartitionState,
        items: list[WorkItem],
        quota: TenantQuota | None,
        answered: list[tuple[WorkItem, OutRecord]],
        ready: list[WorkItem],
    ) -> None:
        gate = state.gate
        answers = self._answers
        for item in items:
            failure = item.failure
            if failure is not None:
                answered.append((item, answers.failure(item, failure)))
                continue
            if quota is not None:
                rejection = quota.admit(item.tenant, self._queued_of(item.tenant))
                if rejection is not None:
                    answered.append((item, answers.error(item, rejection.error_type, str(rejection), 0, 0.0)))
                    continue
            if gate is None or gate.offer(item.key, item):
                item.gated = gate is not None and item.key is not None
                ready.append(item)
            else:
                item.gated = True

    def release(self, item: WorkItem) -> WorkItem | None:
        """``item`` is finished: open its key gate; return the next item of its key, now ready."""
        gate = item.state.gate
        if not item.gated or gate is None:
            return None
        nxt = gate.release(item.key)
        if nxt is None or item.state.revoked:
            return None
        return nxt

    def drop(self, states: Iterable[PartitionState]) -> list[WorkItem]:
        """Revoked partitions: return (and forget) the items waiting behind their key gates."""
        dropped: list[WorkItem] = []
        for state in states:
            if state.gate is not None:
                dropped.extend(state.gate.clear())
        return dropped
