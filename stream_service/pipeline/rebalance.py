"""Rebalance: aiokafka's listener callbacks, handed to the owner of the partitions."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition

from stream_service.observability import audit


class PartitionOwner(Protocol):
    """Who takes partitions on and hands them over (the engine)."""

    async def assign(self, partitions: Collection[TopicPartition]) -> None: ...

    async def revoke(self, partitions: Collection[TopicPartition], timeout_s: float) -> bool: ...


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Passes assignments and revocations to a :class:`PartitionOwner`, and logs them.

    The callbacks hold no locks and do no processing: a revocation waits at most
    ``drain_timeout_s`` for the owner to hand the partitions over, so it cannot stall the group
    for long. ``on_rebalance(True)`` is called when a revocation starts and
    ``on_rebalance(False)`` once the new assignment is in place (readiness uses it).
    """

    def __init__(
        self,
        owner: PartitionOwner,
        drain_timeout_s: float,
        *,
        on_rebalance: Callable[[bool], None] | None = None,
    ) -> None:
        self._owner = owner
        self._drain_timeout_s = drain_timeout_s
        self._on_rebalance = on_rebalance
        self._log = structlog.get_logger("stream_service.rebalance")

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._on_rebalance is not None:
            self._on_rebalance(True)
        if not revoked:
            return
        audit.partitions_revoked(self._log, [(tp.topic, tp.partition) for tp in revoked])
        await self._owner.revoke(revoked, self._drain_timeout_s)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        audit.partitions_assigned(self._log, [(tp.topic, tp.partition) for tp in assigned])
        await self._owner.assign(assigned)
        if self._on_rebalance is not None:
            self._on_rebalance(False)
