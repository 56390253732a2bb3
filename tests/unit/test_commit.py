"""Tests for stream_service.pipeline.commit: only moved, assigned, finished offsets are committed."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from structlog.testing import capture_logs

from stream_service.pipeline.commit import Committer
from stream_service.pipeline.work import PartitionState
from tests.fakes import FakeConsumer

TP0 = TopicPartition("requests", 0)
TP1 = TopicPartition("requests", 1)
TP2 = TopicPartition("requests", 2)


def states(*tps: TopicPartition, done_up_to: int = 0) -> dict[TopicPartition, PartitionState]:
    """States whose offsets 0..9 were consumed and 0..done_up_to-1 finished."""
    out = {}
    for tp in tps:
        state = PartitionState(tp.topic, tp.partition, ordered=False)
        for offset in range(10):
            state.tracker.add(offset)
        for offset in range(done_up_to):
            state.tracker.done(offset)
        out[tp] = state
    return out


async def test_commits_the_finished_prefix_then_only_moved_offsets() -> None:
    """The first commit sends every partition's prefix; later ones only the partitions that moved."""
    consumer = FakeConsumer([TP0, TP1])
    by_tp = states(TP0, TP1, done_up_to=3)
    committer = Committer(consumer, by_tp)
    assert await committer.commit() is True
    assert consumer.commits == [{TP0: 3, TP1: 3}]
    assert await committer.commit() is True
    assert len(consumer.commits) == 1, "nothing moved: no commit request"
    by_tp[TP1].tracker.done(3)
    await committer.commit()
    assert consumer.commits[-1] == {TP1: 4}


async def test_nothing_finished_means_no_commit() -> None:
    """A partition with no finished offset is never committed."""
    consumer = FakeConsumer([TP0])
    committer = Committer(consumer, states(TP0, done_up_to=0))
    assert committer.pending() == {}
    assert await committer.commit() is True
    assert consumer.commits == []


async def test_unfinished_offset_holds_the_commit_back() -> None:
    """An unfinished offset keeps later finished ones from being committed."""
    consumer = FakeConsumer([TP0])
    by_tp = states(TP0, done_up_to=2)
    for offset in (3, 4, 5):
        by_tp[TP0].tracker.done(offset)
    committer = Committer(consumer, by_tp)
    await committer.commit()
    assert consumer.committed == {TP0: 2}


async def test_partitions_no_longer_assigned_are_not_committed() -> None:
    """Offsets of a partition revoked (or never assigned) are filtered out right before committing."""
    consumer = FakeConsumer([TP0, TP1, TP2])
    committer = Committer(consumer, states(TP0, TP1, TP2, done_up_to=4))
    consumer.revoke([TP1])
    await committer.commit()
    assert consumer.commits == [{TP0: 4, TP2: 4}]


async def test_commit_can_be_limited_to_some_partitions() -> None:
    """commit(partitions) commits only those (as on revoke)."""
    consumer = FakeConsumer([TP0, TP1])
    committer = Committer(consumer, states(TP0, TP1, done_up_to=5))
    await committer.commit([TP1])
    assert consumer.commits == [{TP1: 5}]


async def test_failed_commit_is_logged_and_retried_on_the_next_call() -> None:
    """A broker KafkaError is logged, commit returns False, and the next call sends the offsets again."""
    consumer = FakeConsumer([TP0])
    committer = Committer(consumer, states(TP0, done_up_to=6))
    consumer.fail_next_commits(1, CommitFailedError)
    with capture_logs() as logs:
        assert await committer.commit() is False
    assert consumer.commits == []
    (line,) = [entry for entry in logs if entry["event"] == "commit.failed"]
    assert line["log_level"] == "warning"
    assert "CommitFailedError" in line["error"]
    assert line["partitions"] == 1
    assert await committer.commit() is True
    assert consumer.commits == [{TP0: 6}]


async def test_any_kafka_error_is_survived() -> None:
    """Even a generic KafkaError does not escape commit()."""
    consumer = FakeConsumer([TP0])
    committer = Committer(consumer, states(TP0, done_up_to=1))
    consumer.fail_next_commits(3, KafkaError)
    for _ in range(3):
        assert await committer.commit() is False
    assert await committer.commit() is True


async def test_on_commit_sees_the_committed_offsets_and_released_records() -> None:
    """on_commit gets each successful commit's offsets and the records it released; nothing on failure."""
    consumer = FakeConsumer([TP0, TP1])
    seen: list[tuple[dict[TopicPartition, int], int]] = []
    by_tp = states(TP0, TP1, done_up_to=2)
    committer = Committer(consumer, by_tp, on_commit=lambda offsets, n: seen.append((offsets, n)))
    consumer.fail_next_commits(1)
    await committer.commit()
    assert seen == []
    assert by_tp[TP0].tracker.held() == 10, "a failed commit releases nothing"
    await committer.commit()
    assert seen == [({TP0: 2, TP1: 2}, 4)]
    by_tp[TP0].tracker.done(2)
    await committer.commit()
    assert seen[-1] == ({TP0: 3}, 1)
    assert by_tp[TP0].tracker.held() == 7


async def test_forget_lets_a_reassigned_partition_commit_again() -> None:
    """After forget(), the same offset counts as moved, so a new owner of the partition commits it."""
    consumer = FakeConsumer([TP0])
    by_tp = states(TP0, done_up_to=3)
    committer = Committer(consumer, by_tp)
    await committer.commit()
    committer.forget([TP0])
    await committer.commit()
    assert consumer.commits == [{TP0: 3}, {TP0: 3}]
