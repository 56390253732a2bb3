"""Commit: the contiguous completed prefix of each partition, about once a second and on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from stream_service.pipeline.work import PartitionState


class Committer:
    """Commits ``offset + 1`` of the contiguous finished prefix of every partition.

    Guarantees: it never commits past a record whose output is not acknowledged (the trackers
    only advance on acknowledgement); right before committing, offsets are filtered against the
    consumer's current assignment, so a partition revoked during an ``await`` is not committed
    (that would fail the whole commit). Only offsets that moved are sent. A failed commit is
    logged and retried at the next call; nothing is lost, at worst redelivered.
    """

    def __init__(
        self,
        consumer: Any,
        states: Mapping[TopicPartition, PartitionState],
        *,
        on_commit: Callable[[dict[TopicPartition, int], int], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._states = states
        self._committed: dict[TopicPartition, int] = {}
        self._on_commit = on_commit
        self._log = structlog.get_logger("stream_service.commit")

    def pending(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Offsets that moved since the last commit, for the given (default: all) partitions."""
        assignment = self._consumer.assignment()
        chosen = self._states.keys() if partitions is None else partitions
        offsets: dict[TopicPartition, int] = {}
        for tp in chosen:
            state = self._states.get(tp)
            if state is None or tp not in assignment:
                continue
            offset = state.tracker.committable()
            if offset is not None and offset > self._committed.get(tp, -1):
                offsets[tp] = offset
        return offsets

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> bool:
        """Commit what may be committed now; return False when the broker refused.

        ``on_commit`` is told the offsets and how many records the commit released.
        """
        offsets = self.pending(partitions)
        if not offsets:
            return True
        trackers = [self._states[tp].tracker for tp in offsets]
        released = [tracker.take_released() for tracker in trackers]
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            for tracker, n in zip(trackers, released, strict=True):  # not committed after all: still held
                tracker.released += n
            self._log.warning("commit.failed", error=f"{type(exc).__name__}: {exc}", partitions=len(offsets))
            return False
        self._committed.update(offsets)
        if self._on_commit is not None:
            self._on_commit(offsets, sum(released))
        return True

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the memory of revoked partitions; a later owner starts from the broker's offset."""
        for tp in partitions:
            self._committed.pop(tp, None)
