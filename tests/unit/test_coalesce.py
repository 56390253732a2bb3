"""Tests for stream_service.pipeline.coalesce: each distinct request runs once."""

from __future__ import annotations

import structlog
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from stream_service.errors import ProcessorFailed
from stream_service.messages import Request
from stream_service.observability.metrics import Metrics
from stream_service.pipeline.answer import Answers
from stream_service.pipeline.coalesce import Coalescer, Route
from stream_service.pipeline.encode import OutputEncoder, OutRecord
from stream_service.pipeline.execute import Outcome
from stream_service.pipeline.work import PartitionState, WorkItem
from stream_service.processors.base import Output
from stream_service.processors.cache import ResultCache

TP0, TP1 = TopicPartition("requests", 0), TopicPartition("requests", 1)


def coalescer(*, cache: bool = True) -> tuple[Coalescer, Metrics]:
    metrics = Metrics(CollectorRegistry())
    encoder = OutputEncoder(results_topic="results", errors_topic="errors", encoding="json")
    answers = Answers(encoder, metrics, structlog.get_logger(), audit_requests=False)
    return Coalescer(ResultCache(100, 60.0) if cache else None, answers, metrics), metrics


def item(state: PartitionState, offset: int, prompt: str = "same") -> WorkItem:
    request = Request(id=f"r{state.partition}-{offset}", prompt=prompt)
    return WorkItem(state, offset, None, 0, 1, request, None)


SUCCESS = Outcome(Output(content="ANSWER"), None, 1, 0.01)


def test_identical_requests_follow_the_first_and_a_later_one_hits_the_cache() -> None:
    """The first runs, an identical one follows it, and after a success the next comes from the cache."""
    c, metrics = coalescer()
    state = PartitionState("requests", 0, ordered=False)
    answered: list[tuple[WorkItem, OutRecord]] = []
    leader, follower = item(state, 0), item(state, 1)
    assert c.route(leader, answered) is Route.RUN
    assert c.route(follower, answered) is Route.FOLLOWS
    assert c.route(item(state, 2, "other"), answered) is Route.RUN
    assert c.resolve(leader, SUCCESS) == [follower]
    assert c.route(item(state, 3), answered) is Route.ANSWERED
    assert [rec.outcome for _, rec in answered] == ["cached"]
    assert metrics.registry.get_sample_value("stream_service_cache_hits_total") == 1


def test_a_failure_is_not_cached_but_still_answers_the_followers() -> None:
    """Followers get the leader's error; the next identical request runs again."""
    c, _ = coalescer()
    state = PartitionState("requests", 0, ordered=False)
    leader, follower = item(state, 0), item(state, 1)
    c.route(leader, [])
    c.route(follower, [])
    assert c.resolve(leader, Outcome(None, ProcessorFailed("no"), 1, 0.0)) == [follower]
    assert c.route(item(state, 2), []) is Route.RUN


def test_without_a_cache_everything_runs() -> None:
    """With the cache disabled nothing is coalesced."""
    c, _ = coalescer(cache=False)
    state = PartitionState("requests", 0, ordered=False)
    assert [c.route(item(state, i), []) for i in range(3)] == [Route.RUN] * 3


def test_a_dropped_leader_hands_over_to_a_follower_of_a_partition_still_assigned() -> None:
    """Followers of the revoked partition are dropped with it; the first survivor leads."""
    c, _ = coalescer()
    revoked = PartitionState("requests", 0, ordered=False)
    kept = PartitionState("requests", 1, ordered=False)
    leader, gone, first, second = item(revoked, 0), item(revoked, 1), item(kept, 0), item(kept, 1)
    for i in (leader, gone, first, second):
        c.route(i, [])
    revoked.revoked = True
    handover = c.drop([leader])
    assert handover.dropped == [gone]
    assert handover.leaders == [first]
    assert c.resolve(first, SUCCESS) == [second], "the new leader answers the rest"
