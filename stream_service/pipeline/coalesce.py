"""Coalesce: answer a request from the result cache, or let it follow an identical one that runs.

Identical means the same cache key (prompt, tenant and profile); without a cache nothing is
coalesced.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import NamedTuple

from stream_service.observability.metrics import Metrics
from stream_service.pipeline.answer import Answers
from stream_service.pipeline.encode import OutRecord
from stream_service.pipeline.execute import Outcome
from stream_service.pipeline.work import WorkItem
from stream_service.processors.cache import CacheBackend


class Route(Enum):
    """Where :meth:`Coalescer.route` sent a request."""

    RUN = "run"  # it leads its key: run it
    ANSWERED = "answered"  # answered from the cache
    FOLLOWS = "follows"  # an identical request runs: it gets that one's outcome


class Handover(NamedTuple):
    """What dropping revoked items did to the requests that followed them."""

    dropped: list[WorkItem]  # followers of revoked partitions, to drop with them
    leaders: list[WorkItem]  # followers that lead now, in place of a dropped leader: to run


class Coalescer:
    """Runs each distinct request once.

    Guarantees: a request whose key is cached is answered from the cache (``cached: true``);
    one whose key is running follows it and gets the same outcome when it finishes (published
    ``cached: true`` as well, counted as a cache miss); otherwise it becomes the leader of its
    key and must run. A leader that is dropped (its partition revoked) hands over to its first
    follower from a partition still assigned, so no follower is left without an answer.
    """

    def __init__(self, cache: CacheBackend | None, answers: Answers, metrics: Metrics) -> None:
        self._cache = cache
        self._answers = answers
        self._metrics = metrics
        self._followers: dict[bytes, list[WorkItem]] = {}  # key of a running leader -> its followers

    def route(self, item: WorkItem, answered: list[tuple[WorkItem, OutRecord]]) -> Route:
        """Where ``item`` goes; when answered, its output was appended to ``answered``."""
        cache = self._cache
        if cache is None:
            return Route.RUN
        request = item.request
        assert request is not None
        key = item.cache_key = cache.key(request)
        hit = cache.get(key)
        if hit is not None:
            self._metrics.cache_hits_total.inc()
            answered.append((item, self._answers.result(item, hit, attempts=0, seconds=0.0, cached=True)))
            return Route.ANSWERED
        self._metrics.cache_misses_total.inc()
        followers = self._followers.get(key)
        if followers is not None:
            followers.append(item)
            return Route.FOLLOWS
        self._followers[key] = []
        return Route.RUN

    def resolve(self, leader: WorkItem, outcome: Outcome) -> list[WorkItem]:
        """``leader`` finished: cache a success and return its followers (now answered by it)."""
        key = leader.cache_key
        if key is None:
            return []
        followers = self._followers.pop(key, None) or []
        if outcome.output is not None and self._cache is not None:
            self._cache.put(key, outcome.output)
        return followers

    def answer(self, follower: WorkItem, outcome: Outcome) -> OutRecord:
        """The output of a follower: its leader's outcome."""
        return self._answers.follower(follower, outcome)

    def drop(self, dropped: Iterable[WorkItem]) -> Handover:
        """Items of revoked partitions are dropped: hand their followers over."""
        handover = Handover([], [])
        for item in dropped:
            key = item.cache_key
            if key is None or key not in self._followers:
                continue
            followers = self._followers.pop(key)
            survivors = [f for f in followers if not f.state.revoked]
            handover.dropped.extend(f for f in followers if f.state.revoked)
            if survivors:
                # The leader is gone with its partition; the first identical request left leads now.
                handover.leaders.append(survivors[0])
                self._followers[key] = survivors[1:]
        return handover
