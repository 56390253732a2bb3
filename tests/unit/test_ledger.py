"""Tests for stream_service.pipeline.ledger: one writer of the in-flight counters, invariants kept."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stream_service.pipeline.ledger import Ledger
from stream_service.pipeline.work import PartitionState, WorkItem
from tests.fakes import FakeClock

TP0 = TopicPartition("requests", 0)
TP1 = TopicPartition("requests", 1)


def items(state: PartitionState, offsets: range, size: int = 10) -> list[WorkItem]:
    return [WorkItem(state, offset, None, 0, size, None, None) for offset in offsets]


def test_counts_follow_a_record_from_fetch_to_commit() -> None:
    """consumed -> started -> finished -> committed moves active, nbytes and tracked as documented."""
    ledger = Ledger(ordered=False)
    (state,) = ledger.open([TP0])
    batch = items(state, range(3))
    ledger.consumed(batch)
    assert (ledger.tracked, ledger.active, ledger.nbytes, state.queued) == (3, 3, 30, 3)
    ledger.started(batch)
    assert (state.queued, state.in_flight) == (0, 3)
    ledger.finished(batch[:2])
    assert (ledger.tracked, ledger.active, ledger.nbytes) == (3, 1, 10), "finished is not released yet"
    assert ledger.committed(ledger.commit_points()) == 2
    assert (ledger.tracked, ledger.active) == (1, 1)
    ledger.check()


def test_events_fire_when_capacity_frees_and_work_finishes() -> None:
    """finished sets both events; a commit that releases records sets capacity_changed."""
    ledger = Ledger(ordered=False)
    (state,) = ledger.open([TP0])
    batch = items(state, range(2))
    ledger.consumed(batch)
    ledger.started(batch)
    ledger.capacity_changed.clear()
    ledger.work_finished.clear()
    ledger.finished(batch)
    assert ledger.capacity_changed.is_set() and ledger.work_finished.is_set()
    ledger.capacity_changed.clear()
    ledger.committed(ledger.commit_points())
    assert ledger.capacity_changed.is_set()


def test_a_forgotten_partition_keeps_the_capacity_of_its_running_records_until_they_finish() -> None:
    """Dropped and finished records are released on forget; running ones hold capacity until finished."""
    ledger = Ledger(ordered=False)
    (state,) = ledger.open([TP0])
    batch = items(state, range(4))
    ledger.consumed(batch)
    ledger.started(batch[:2])  # 0 and 1 run; 2 and 3 wait
    ledger.finished(batch[:1])
    ledger.revoke([TP0])
    ledger.dropped(batch[2:])
    ledger.forget([TP0])
    assert (ledger.tracked, ledger.active, ledger.nbytes) == (1, 1, 10), "only the running record holds"
    ledger.check()
    ledger.finished(batch[1:2])
    assert (ledger.tracked, ledger.active, ledger.nbytes) == (0, 0, 0)
    assert ledger.commit_points() == {}, "a forgotten partition is never committed"
    ledger.check()


def test_forgetting_a_partition_with_queued_records_is_refused() -> None:
    """Queued records must be dropped (or run) before their partition is forgotten."""
    ledger = Ledger(ordered=False)
    (state,) = ledger.open([TP0])
    ledger.consumed(items(state, range(1)))
    with pytest.raises(RuntimeError, match="queued"):
        ledger.forget([TP0])


def test_check_reports_a_broken_invariant() -> None:
    """check() names the invariant that a stray write broke."""
    ledger = Ledger(ordered=False)
    (state,) = ledger.open([TP0])
    ledger.consumed(items(state, range(2)))
    state.queued -= 1  # a write from outside the ledger
    with pytest.raises(AssertionError, match="active 2 != queued"):
        ledger.check()


def test_levels_callback_sees_tracked_and_bytes() -> None:
    """on_levels is told (tracked, nbytes) after every change (the in-flight gauges)."""
    seen: list[tuple[int, int]] = []
    ledger = Ledger(ordered=False, on_levels=lambda tracked, nbytes: seen.append((tracked, nbytes)))
    (state,) = ledger.open([TP0])
    batch = items(state, range(2), size=5)
    ledger.consumed(batch)
    ledger.started(batch)
    ledger.finished(batch)
    ledger.committed(ledger.commit_points())
    assert seen[-3:] == [(2, 10), (2, 0), (0, 0)]


async def test_wait_idle_returns_when_the_given_partitions_stop_running() -> None:
    """wait_idle(states) waits for their running records only, and gives up at the timeout."""
    clock = FakeClock()
    ledger = Ledger(ordered=False, clock=clock)
    s0, s1 = ledger.open([TP0, TP1])
    b0, b1 = items(s0, range(1)), items(s1, range(1))
    ledger.consumed(b0 + b1)
    ledger.started(b0 + b1)
    waiter = asyncio.create_task(ledger.wait_idle([s0], timeout_s=60.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    ledger.finished(b1)
    await asyncio.sleep(0)
    assert not waiter.done(), "the other partition finishing does not end the wait"
    ledger.finished(b0)
    assert await waiter is True
    assert await ledger.wait_idle(None, timeout_s=0.0) is True
    ledger.consumed(items(s0, range(1, 2)))
    clock.advance(1.0)
    assert await ledger.wait_idle(None, timeout_s=0.0) is False


class LedgerMachine(RuleBasedStateMachine):
    """Random sequences of every ledger operation; the invariants hold after each one."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(ordered=False)
        self.next_offset: dict[TopicPartition, int] = {}
        self.queued: list[WorkItem] = []
        self.running: list[WorkItem] = []

    @rule(tp=st.sampled_from([TP0, TP1]))
    def assign(self, tp: TopicPartition) -> None:
        if tp in self.ledger.states:
            self.revoke_and_forget(tp)
        self.ledger.open([tp])
        self.next_offset[tp] = 0

    def revoke_and_forget(self, tp: TopicPartition) -> None:
        states = self.ledger.revoke([tp])
        waiting = [i for i in self.queued if i.state in states]
        self.queued = [i for i in self.queued if i.state not in states]
        self.ledger.dropped(waiting)
        self.ledger.forget([tp])

    @precondition(lambda self: bool(self.ledger.states))
    @rule(data=st.data(), n=st.integers(1, 5), size=st.integers(0, 100))
    def consume(self, data: st.DataObject, n: int, size: int) -> None:
        tp = data.draw(st.sampled_from(sorted(self.ledger.states)))
        state = self.ledger.states[tp]
        start = self.next_offset[tp] + data.draw(st.integers(0, 2), label="gap")
        batch = items(state, range(start, start + n), size)
        self.next_offset[tp] = start + n
        self.ledger.consumed(batch)
        self.queued.extend(batch)

    @precondition(lambda self: bool(self.queued))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        item = self.queued.pop(data.draw(st.integers(0, len(self.queued) - 1)))
        self.ledger.started([item])
        self.running.append(item)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        item = self.running.pop(data.draw(st.integers(0, len(self.running) - 1)))
        self.ledger.finished([item])

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        item = self.running.pop(data.draw(st.integers(0, len(self.running) - 1)))
        if item.state.forgotten:
            self.running.append(item)
            return
        self.ledger.requeued([item])
        self.queued.append(item)

    @precondition(lambda self: bool(self.ledger.states))
    @rule(data=st.data())
    def hand_over(self, data: st.DataObject) -> None:
        self.revoke_and_forget(data.draw(st.sampled_from(sorted(self.ledger.states))))

    @rule(succeed=st.booleans())
    def commit(self, succeed: bool) -> None:
        points = self.ledger.commit_points()
        if succeed:
            self.ledger.committed(points)

    @invariant()
    def invariants_hold(self) -> None:
        self.ledger.check()
        assert self.ledger.active == len(self.queued) + len(self.running)


test_ledger_invariants_hold_under_any_sequence = LedgerMachine.TestCase
test_ledger_invariants_hold_under_any_sequence.settings = settings(max_examples=150, deadline=None)
