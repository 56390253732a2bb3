"""Tests for stream_service.pipeline.rebalance: the listener only hands partitions to their owner."""

from __future__ import annotations

from collections.abc import Collection

from aiokafka import TopicPartition

from stream_service.pipeline.rebalance import RebalanceListener

TP0 = TopicPartition("requests", 0)


class Owner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[TopicPartition], float | None]] = []

    async def assign(self, partitions: Collection[TopicPartition]) -> None:
        self.calls.append(("assign", frozenset(partitions), None))

    async def revoke(self, partitions: Collection[TopicPartition], timeout_s: float) -> bool:
        self.calls.append(("revoke", frozenset(partitions), timeout_s))
        return True


async def test_revocation_and_assignment_reach_the_owner_and_readiness() -> None:
    """Revoke passes the drain timeout; readiness sees the rebalance start and end."""
    owner = Owner()
    seen: list[bool] = []
    listener = RebalanceListener(owner, 7.5, on_rebalance=seen.append)
    await listener.on_partitions_revoked({TP0})
    await listener.on_partitions_assigned({TP0})
    assert owner.calls == [("revoke", frozenset({TP0}), 7.5), ("assign", frozenset({TP0}), None)]
    assert seen == [True, False]


async def test_an_empty_revocation_is_not_passed_on() -> None:
    """The first rebalance revokes nothing: the owner is not asked, readiness still hears of it."""
    owner = Owner()
    seen: list[bool] = []
    listener = RebalanceListener(owner, 1.0, on_rebalance=seen.append)
    await listener.on_partitions_revoked(set())
    assert owner.calls == []
    assert seen == [True]
