"""Rebalance: on revoke, stop admitting, drain in-flight work for a bounded time, commit, release."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition

from stream_service.observability import audit

if TYPE_CHECKING:
    from stream_service.engine import Engine


class DrainingRebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands partitions over cleanly.

    On revoke: waiting work of the revoked partitions is dropped (the next owner gets it
    again), their in-flight work has ``drain_timeout_s`` to be published, then what finished is
    committed and the state forgotten. Work that did not finish in time is simply redelivered.
    The callback holds no locks and does no processing itself; it only signals and waits with a
    timeout, so it cannot stall the group for long. On assign: fresh state for every partition.
    """

    def __init__(self, engine: Engine, drain_timeout_s: float) -> None:
        self._engine = engine
        self._drain_timeout_s = drain_timeout_s
        self._log = structlog.get_logger("stream_service.rebalance")

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        engine = self._engine
        if not revoked:
            return
        audit.partitions_revoked(self._log, [(tp.topic, tp.partition) for tp in revoked])
        states = engine.stop_admitting(revoked)
        drained = await engine.wait_idle(states, self._drain_timeout_s)
        if not drained:
            self._log.warning(
                "rebalance.drain_timeout",
                timeout_s=self._drain_timeout_s,
                in_flight=sum(s.in_flight for s in states),
                hint="unfinished work is redelivered; raise delivery.drain_timeout_s for fewer duplicates",
            )
        await engine.committer.commit(revoked)
        engine.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        audit.partitions_assigned(self._log, [(tp.topic, tp.partition) for tp in assigned])
        self._engine.metrics.rebalances_total.inc()  # every assignment this member receives
        self._engine.assign(assigned)
