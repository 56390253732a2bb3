"""Exactly once with fakes: committed outputs and committed offsets always match, whatever fails."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from typing import Any
from unittest import mock

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stream_service.config import BatchSettings, DeliverySettings, ExecutorSettings
from stream_service.pipeline import transact_send
from tests.engine_kit import TP0, TP1, Harness, config, req, running, settle
from tests.fakes import FakeTxnCoordinator, SentRecord

GROUP = "stream-service"


def eos(**delivery: Any) -> Any:
    """An exactly-once configuration; transactions commit every 20 ms unless told otherwise."""
    base: dict[str, Any] = {
        "commit_interval_s": 0.02,
        "guarantee": "exactly_once",
        "transaction_interval_ms": 20.0,
    }
    base.update(delivery)
    return config(delivery=DeliverySettings(**base))


def committed_sources(h: Harness) -> Counter[tuple[int, int]]:
    """(partition, offset) of the input each committed output answers, counted."""
    return Counter(_source(rec) for rec in h.coordinator.committed)


def _source(rec: SentRecord) -> tuple[int, int]:
    return int(rec.header("source-partition") or b"-1"), int(rec.header("source-offset") or b"-1")


async def until_committed_to(h: Harness, ends: dict[TopicPartition, int]) -> None:
    """Wait until the committed offsets reach ``ends`` (transactions commit on their own clock)."""
    while any(h.coordinator.offsets.get(tp, 0) < end for tp, end in ends.items()):
        h.coordinator.changed.clear()
        await h.coordinator.changed.wait()


async def test_outputs_and_offsets_commit_together_once_each() -> None:
    """Every input has exactly one committed output, and the committed offsets reach the end."""
    h = Harness(eos())
    async with running(h, TP0, TP1):
        h.consumer.feed_values(TP0, [req(f"a{i}", f"p{i}") for i in range(30)] + [b"bad"])
        h.consumer.feed_values(TP1, [req(f"b{i}", f"q{i}") for i in range(20)])
        await until_committed_to(h, {TP0: 31, TP1: 20})
    assert committed_sources(h) == Counter({(0, o): 1 for o in range(31)} | {(1, o): 1 for o in range(20)})
    assert h.coordinator.offsets == {TP0: 31, TP1: 20}
    assert h.consumer.commits == [], "exactly once never commits through the consumer"
    assert (h.ledger.tracked, h.ledger.active) == (0, 0)


async def test_a_later_output_never_commits_before_an_earlier_input_is_answered() -> None:
    """Out-of-order completion: a transaction holds only outputs of inputs before its offset."""
    h = Harness(eos(), cache=None)
    cfg_batch = BatchSettings(max_size=1, min_size=1, initial_size=1, linger_ms=0.0)
    h = Harness(
        config(
            batch=cfg_batch,
            executor=ExecutorSettings(ordering="unordered"),
            delivery=DeliverySettings(
                guarantee="exactly_once", transaction_interval_ms=5.0, commit_interval_s=0.02
            ),
        )
    )
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("slow", "block:g:0"), req("fast1", "x"), req("fast2", "y")])
        await h.script.started("block:g:0")
        await settle(h, polls=5)  # transactions get their chance to commit meanwhile
        assert h.coordinator.committed == [], "fast outputs wait until the slow input is answered"
        assert h.coordinator.offsets.get(TP0, 0) == 0
        h.script.open("g")
        await until_committed_to(h, {TP0: 3})
    assert [_source(r)[1] for r in h.coordinator.committed] == [0, 1, 2]


async def test_a_failed_commit_is_aborted_and_the_partition_read_again() -> None:
    """A commit that fails aborts the transaction; its inputs are processed again, answered once."""
    h = Harness(eos())
    h.coordinator.fail_next_commits(2, KafkaTimeoutError)
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req(f"r{i}", f"p{i}") for i in range(10)])
        await until_committed_to(h, {TP0: 10})
    assert h.coordinator.aborted >= 1
    assert committed_sources(h) == Counter({(0, o): 1 for o in range(10)})
    assert sum(h.processor.calls.values()) > 10, "the aborted inputs were processed again"


async def test_a_failed_send_is_aborted_and_the_partition_read_again() -> None:
    """An output the broker did not take spoils its transaction: abort, read again, answer once."""
    h = Harness(eos())
    h.coordinator.fail_next_sends(1)
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req(f"r{i}", f"p{i}") for i in range(10)])
        await until_committed_to(h, {TP0: 10})
    assert committed_sources(h) == Counter({(0, o): 1 for o in range(10)})


async def test_a_fenced_instance_stops_and_commits_nothing_more() -> None:
    """When another instance starts the partition's producer, ours is fenced: it commits nothing more."""
    h = Harness(eos(transaction_interval_ms=1000.0))
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "block:g:0")])
        await h.script.started("block:g:0")
        txn_id = f"stream-service-{GROUP}-requests-0"
        await h.coordinator.start_producer(txn_id)  # the partition's new owner fences us
        h.script.open("g")
        h.consumer.feed_values(TP0, [req("r1", "late")])
        await settle(h, polls=5)
        await h.drain()
    assert h.coordinator.committed == []
    assert h.coordinator.offsets == {}
    assert h.consumer.paused() == {TP0}, "nothing more is fetched of a partition we lost"


async def test_revoke_commits_what_finished_and_the_next_owner_does_the_rest() -> None:
    """A revoked partition commits its finished prefix; running work is redone by the next owner only."""
    cfg = config(
        executor=ExecutorSettings(concurrency=1, ordering="unordered"),
        delivery=DeliverySettings(
            guarantee="exactly_once",
            commit_interval_s=0.02,
            drain_timeout_s=0.1,
            transaction_interval_ms=1000.0,
        ),
    )
    h = Harness(cfg)
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "ok"), req("r1", "block:g:1"), req("r2", "q2")])
        await h.script.started("block:g:1")
        await h.revoke(TP0)
        assert committed_sources(h) == Counter({(0, 0): 1}), "r0 committed at the revoke"
        h.script.open("g")  # r1 finishes after its partition was handed over
        await settle(h)
        assert committed_sources(h) == Counter({(0, 0): 1}), "its late output is not committed"
        await h.assign(TP0)
        await until_committed_to(h, {TP0: 3})
    assert committed_sources(h) == Counter({(0, o): 1 for o in range(3)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.sampled_from(["ok", "jitter", "fail", "flaky"]), min_size=1, max_size=25),
    commit_failures=st.integers(0, 3),
    send_failures=st.integers(0, 3),
    interval_ms=st.sampled_from([1.0, 5.0, 50.0]),
    batching=st.booleans(),
)
def test_committed_data_has_exactly_one_output_per_input_whatever_fails(
    records: list[str], commit_failures: int, send_failures: int, interval_ms: float, batching: bool
) -> None:
    """Under random processing times and failed commits and sends, sent record by record or in
    batches (of 2 or more): one committed output per input."""

    async def run() -> Harness:
        coordinator = FakeTxnCoordinator(batching=batching, partitions=1)
        cfg = eos(transaction_interval_ms=interval_ms)
        h = Harness(cfg, seed=len(records), coordinator=coordinator)
        h.coordinator.fail_next_commits(commit_failures, KafkaError)
        h.coordinator.fail_next_sends(send_failures)
        async with running(h, TP0, TP1):
            for i, word in enumerate(records):
                tp = TP0 if i % 3 else TP1
                h.consumer.feed_values(tp, [req(f"r{i}", f"{word}:{i}")], keys=[f"k{i % 4}".encode()])
            ends = {
                tp: sum(1 for i in range(len(records)) if (TP0 if i % 3 else TP1) == tp) for tp in (TP0, TP1)
            }
            await until_committed_to(h, {tp: n for tp, n in ends.items() if n})
        return h

    with mock.patch.object(transact_send, "TXN_BATCH_MIN_RECORDS", 2):
        h = asyncio.run(run())
    event("sent in batches" if h.coordinator.batches_sent else "sent record by record")
    inputs = Counter(_source_of(i) for i in range(len(records)))
    assert committed_sources(h) == Counter({source: 1 for source in inputs})


def _source_of(i: int) -> tuple[int, int]:
    partition = 0 if i % 3 else 1
    return partition, sum(1 for j in range(i) if (0 if j % 3 else 1) == partition)


def _partition() -> Any:
    from stream_service.pipeline.transact_state import TxnPartition
    from stream_service.pipeline.work import PartitionState

    part = TxnPartition(TP0, "txn", PartitionState("requests", 0, ordered=True))
    part.begin(0.0)
    return part


def _send(part: Any) -> asyncio.Future[Any]:
    """One send of the open transaction, counted as _hand_over counts it."""
    sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    part.unsettled += 1
    sent.add_done_callback(functools.partial(part.sent, part.generation))
    return sent


async def test_a_transaction_with_a_failed_send_is_not_committed() -> None:
    """aiokafka would commit past a failed send; the commit waits for every send and refuses."""
    part = _partition()
    ok, failed = _send(part), _send(part)
    ok.set_result(None)
    failed.set_exception(KafkaTimeoutError("lost"))
    assert await part.settle() == "KafkaTimeoutError: KafkaTimeoutError: lost"


async def test_a_commit_waits_for_the_sends_still_in_flight() -> None:
    """settle() returns only once the last send of the open transaction is acknowledged."""
    part = _partition()
    sent = _send(part)
    waiting = asyncio.create_task(part.settle())
    await asyncio.sleep(0)
    assert not waiting.done()
    sent.set_result(None)
    assert await waiting is None


async def test_late_acks_of_an_aborted_transaction_do_not_count() -> None:
    """A send of an aborted transaction finishing later neither fails nor settles the next one."""
    part = _partition()
    old = _send(part)
    part.begin(1.0)  # aborted, a new transaction opened
    old.set_exception(KafkaTimeoutError("late"))
    await asyncio.sleep(0)
    assert part.unsettled == 0 and part.send_error is None
    assert await part.settle() is None
