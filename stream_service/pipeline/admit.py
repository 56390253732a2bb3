"""Admit: the records of one ``getmany`` become work items: decoded, checked against the tenant
quota, and let through their key gate (or held behind an earlier record of the same key)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition

from stream_service.observability.tracing import NO_TRACING, Tracing
from stream_service.pipeline.answer import Answers
from stream_service.pipeline.decode import DecodeFailure, RequestDecoder
from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.quota import TenantQuota
from stream_service.pipeline.work import PartitionState, WorkItem
from stream_service.settings import Ordering
from stream_service.wire import CONTENT_TYPE

ORDER_BY_PARTITION = 0  # the single gate key used when ordering = partition


Reset = Callable[[TopicPartition, int], PartitionState]
"""Called when a partition's offsets went backwards; returns the fresh state to continue with."""


class Admission:
    """Turns fetched records into work items; never raises for anything a record holds.

    Guarantees: every record of an assigned, not revoked partition is registered with the
    ledger and ends up in exactly one place: ready to be answered at once (it could not be
    decoded, or the tenant's quota rejected it: ``item.answer`` holds its error record), ready
    to run, or waiting behind its key gate until :meth:`release` of the previous item of its
    key. Every output of a key, errors included, is therefore published in offset order: with
    ``ordering = key`` per record key, with ``partition`` per partition; ``unordered`` gates
    nothing. A header with a null value counts as absent. Records of partitions without state
    (fetched before a rebalance took them) are ignored: the next owner reads them again. A fetch
    whose offsets go backwards (the topic was recreated, or the position reset) calls ``reset``
    for a fresh partition state first. With tracing on, each item gets its request span, child
    of the record's ``traceparent`` header (``tracing`` never raises for what a header holds).
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
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._ledger = ledger
        self._decode = decoder.decode
        self._quota = quota
        self._answers = answers
        self._ordering = ordering
        self._queued_of = queued_of
        self._tracing = tracing if tracing.enabled else None  # off: not even a call per fetch

    def take(self, batch: Mapping[TopicPartition, Sequence[Any]], reset: Reset) -> list[WorkItem]:
        """Admit the records of one fetch; return the items ready now (answered or to run)."""
        ready: list[WorkItem] = []
        ledger = self._ledger
        states = ledger.states
        decode = self._decode
        by_key = self._ordering == "key"
        partition_key = ORDER_BY_PARTITION if self._ordering == "partition" else None
        for tp, records in batch.items():
            state = states.get(tp)
            if state is None or state.revoked or not records:
                continue  # fetched before a rebalance took the partition away: it is redelivered
            if records[0].offset <= state.tracker.last_added:
                state = reset(tp, records[0].offset)
            items: list[WorkItem] = []
            for rec in records:
                value = rec.value
                content_type = None
                if rec.headers:
                    for name, hval in rec.headers:
                        if name == CONTENT_TYPE and hval is not None:
                            content_type = hval
                decoded = decode(value, content_type)
                size = len(value) if value is not None else 0
                key = rec.key if by_key else partition_key
                if isinstance(decoded, DecodeFailure):
                    item = WorkItem(state, rec.offset, key, rec.timestamp, size, None, decoded)
                else:
                    item = WorkItem(state, rec.offset, key, rec.timestamp, size, decoded, None)
                items.append(item)
            if self._tracing is not None:
                traces = self._tracing.start(tp.topic, tp.partition, records, items)
                for item, trace in zip(items, traces, strict=True):
                    item.trace = trace
            ledger.consumed(items)
            self._route(state, items, ready)
        return ready

    def _route(self, state: PartitionState, items: list[WorkItem], ready: list[WorkItem]) -> None:
        gate = state.gate
        answers = self._answers
        quota = self._quota if self._quota.active else None
        for item in items:
            failure = item.failure
            if failure is not None:
                item.answer = answers.failure(item, failure)
            elif quota is not None:
                rejection = quota.admit(item.tenant, self._queued_of(item.tenant))
                if rejection is not None:
                    item.answer = answers.error(item, rejection.error_type, str(rejection), 0, 0.0)
            key = item.key
            if gate is None or key is None:
                ready.append(item)
            elif gate.offer(key, item):
                item.gated = True
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
