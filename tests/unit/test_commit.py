"""Tests for stream_service.pipeline.commit: only moved, assigned, finished offsets are committed."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from structlog.testing import capture_logs

from stream_service.pipeline.commit import CommitPolicy, CommitPolicyState, Committer
from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.work import WorkItem
from tests.fakes import FakeClock, FakeConsumer

TP0 = TopicPartition("requests", 0)
TP1 = TopicPartition("requests", 1)
TP2 = TopicPartition("requests", 2)


class Work:
    """A ledger whose partitions consumed offsets 0..9; :meth:`finish` acknowledges some of them."""

    def __init__(self, *tps: TopicPartition, done_up_to: int = 0) -> None:
        self.ledger = Ledger(ordered=False)
        self.items: dict[TopicPartition, list[WorkItem]] = {}
        for state, tp in zip(self.ledger.open(tps), tps, strict=True):
            items = [WorkItem(state, offset, None, 0, 1, None, None) for offset in range(10)]
            self.ledger.consumed(items)
            self.ledger.started(items)
            self.items[tp] = items
        for tp in tps:
            self.finish(tp, *range(done_up_to))

    def finish(self, tp: TopicPartition, *offsets: int) -> None:
        self.ledger.finished([self.items[tp][offset] for offset in offsets])


async def test_commits_the_finished_prefix_then_only_moved_offsets() -> None:
    """The first commit sends every partition's prefix; later ones only the partitions that moved."""
    consumer = FakeConsumer([TP0, TP1])
    work = Work(TP0, TP1, done_up_to=3)
    committer = Committer(consumer, work.ledger)
    assert await committer.commit() is True
    assert consumer.commits == [{TP0: 3, TP1: 3}]
    assert await committer.commit() is True
    assert len(consumer.commits) == 1, "nothing moved: no commit request"
    work.finish(TP1, 3)
    await committer.commit()
    assert consumer.commits[-1] == {TP1: 4}
    work.ledger.check()


async def test_nothing_finished_means_no_commit() -> None:
    """A partition with no finished offset is never committed."""
    consumer = FakeConsumer([TP0])
    committer = Committer(consumer, Work(TP0, done_up_to=0).ledger)
    assert committer.pending() == {}
    assert await committer.commit() is True
    assert consumer.commits == []


async def test_unfinished_offset_holds_the_commit_back() -> None:
    """An unfinished offset keeps later finished ones from being committed."""
    consumer = FakeConsumer([TP0])
    work = Work(TP0, done_up_to=2)
    work.finish(TP0, 3, 4, 5)
    await Committer(consumer, work.ledger).commit()
    assert consumer.committed == {TP0: 2}


async def test_partitions_no_longer_assigned_are_not_committed() -> None:
    """Offsets of a partition revoked (or never assigned) are filtered out right before committing."""
    consumer = FakeConsumer([TP0, TP1, TP2])
    committer = Committer(consumer, Work(TP0, TP1, TP2, done_up_to=4).ledger)
    consumer.revoke([TP1])
    await committer.commit()
    assert consumer.commits == [{TP0: 4, TP2: 4}]


async def test_commit_can_be_limited_to_some_partitions() -> None:
    """commit(partitions) commits only those (as on revoke)."""
    consumer = FakeConsumer([TP0, TP1])
    committer = Committer(consumer, Work(TP0, TP1, done_up_to=5).ledger)
    await committer.commit([TP1])
    assert consumer.commits == [{TP1: 5}]


async def test_failed_commit_is_logged_and_retried_on_the_next_call() -> None:
    """A broker KafkaError is logged, commit returns False, and the next call sends the offsets again."""
    consumer = FakeConsumer([TP0])
    failures: list[BaseException] = []
    committer = Committer(consumer, Work(TP0, done_up_to=6).ledger, on_failure=failures.append)
    consumer.fail_next_commits(1, CommitFailedError)
    with capture_logs() as logs:
        assert await committer.commit() is False
    assert consumer.commits == []
    (line,) = [entry for entry in logs if entry["event"] == "commit.failed"]
    assert line["log_level"] == "warning"
    assert "CommitFailedError" in line["error"]
    assert line["partitions"] == 1
    assert [type(e) for e in failures] == [CommitFailedError]
    assert await committer.commit() is True
    assert consumer.commits == [{TP0: 6}]


async def test_any_kafka_error_is_survived() -> None:
    """Even a generic KafkaError does not escape commit()."""
    consumer = FakeConsumer([TP0])
    committer = Committer(consumer, Work(TP0, done_up_to=1).ledger)
    consumer.fail_next_commits(3, KafkaError)
    for _ in range(3):
        assert await committer.commit() is False
    assert await committer.commit() is True


async def test_only_a_successful_commit_releases_records_from_the_ledger() -> None:
    """on_commit sees each successful commit's offsets; the ledger releases exactly what they covered."""
    consumer = FakeConsumer([TP0, TP1])
    seen: list[dict[TopicPartition, int]] = []
    work = Work(TP0, TP1, done_up_to=2)
    committer = Committer(consumer, work.ledger, on_commit=seen.append)
    consumer.fail_next_commits(1)
    await committer.commit()
    assert seen == []
    assert work.ledger.tracked == 20, "a failed commit releases nothing"
    await committer.commit()
    assert seen == [{TP0: 2, TP1: 2}]
    assert work.ledger.tracked == 16
    work.finish(TP0, 2)
    await committer.commit()
    assert seen[-1] == {TP0: 3}
    assert work.ledger.tracked == 15
    work.ledger.check()


async def test_a_reassigned_partition_commits_again_from_its_fresh_state() -> None:
    """A partition forgotten and assigned again starts over: the same offset counts as moved."""
    consumer = FakeConsumer([TP0])
    work = Work(TP0, done_up_to=3)
    committer = Committer(consumer, work.ledger)
    await committer.commit()
    work.ledger.revoke([TP0])
    work.ledger.dropped([item for item in work.items[TP0] if not item.running])
    work.ledger.forget([TP0])
    (state,) = work.ledger.open([TP0])
    items = [WorkItem(state, offset, None, 0, 1, None, None) for offset in (0, 1, 2)]
    work.ledger.consumed(items)
    work.ledger.started(items)
    work.ledger.finished(items)
    await committer.commit()
    assert consumer.commits == [{TP0: 3}, {TP0: 3}]


def test_commit_policy_commits_early_when_finished_work_holds_capacity() -> None:
    """should_commit is true once enough finished records wait, or when nothing is active any more."""
    clock = FakeClock()
    state = CommitPolicyState(CommitPolicy.for_capacity(interval_s=1.0, max_in_flight=40), clock)
    assert state.policy.release_threshold == 10
    assert not state.should_commit(tracked=15, active=6), "9 waiting, 6 still active"
    assert state.should_commit(tracked=16, active=6), "10 waiting"
    assert state.should_commit(tracked=3, active=0), "everything finished"
    assert not state.should_commit(tracked=0, active=0), "nothing to commit"


def test_commit_policy_interval_counts_from_the_last_commit() -> None:
    """wait_s falls with the injected clock and starts again after did_commit."""
    clock = FakeClock()
    state = CommitPolicyState(CommitPolicy(interval_s=1.0, release_threshold=100), clock)
    assert state.wait_s() == 1.0
    clock.advance(0.75)
    assert state.wait_s() == 0.25
    clock.advance(5.0)
    assert state.wait_s() == 0.0
    state.did_commit()
    assert state.wait_s() == 1.0
