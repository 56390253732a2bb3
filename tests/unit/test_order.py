"""Tests for stream_service.pipeline.order: per-key gates release items one at a time, in offer order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.pipeline.order import KeyGate


def test_same_key_items_are_released_in_offer_order() -> None:
    """Items of one key wait behind the running one and come out in the order they were offered."""
    gate: KeyGate[str] = KeyGate()
    assert gate.offer(b"k", "first") is True
    assert gate.offer(b"k", "second") is False
    assert gate.offer(b"k", "third") is False
    assert len(gate) == 2
    assert gate.release(b"k") == "second"
    assert gate.release(b"k") == "third"
    assert gate.release(b"k") is None
    assert len(gate) == 0
    assert gate.offer(b"k", "fourth") is True, "the key is free again once its last item finished"


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param([b"a", b"b", b"c"], id="bytes keys"),
        pytest.param([0, 1, 2], id="int keys"),
        pytest.param([b"a", 0, "a"], id="mixed key types"),
    ],
)
def test_distinct_keys_never_wait(keys: list[object]) -> None:
    """Items with different keys are all admitted at once."""
    gate: KeyGate[int] = KeyGate()
    assert all(gate.offer(key, i) for i, key in enumerate(keys))
    assert len(gate) == 0


def test_none_key_is_never_gated() -> None:
    """A None key asks for no ordering: every such item runs at once and release is a no-op."""
    gate: KeyGate[int] = KeyGate()
    assert all(gate.offer(None, i) for i in range(5))
    assert gate.release(None) is None
    assert len(gate) == 0


def test_clear_returns_waiting_items_and_frees_every_key() -> None:
    """clear() hands back exactly the waiting items, and afterwards every key admits at once."""
    gate: KeyGate[str] = KeyGate()
    gate.offer(b"a", "a1")
    gate.offer(b"a", "a2")
    gate.offer(b"b", "b1")
    gate.offer(b"b", "b2")
    gate.offer(b"b", "b3")
    assert sorted(gate.clear()) == ["a2", "b2", "b3"]
    assert len(gate) == 0
    assert gate.offer(b"a", "a4") is True
    assert gate.offer(b"b", "b4") is True


@given(
    keys=st.lists(st.sampled_from([b"a", b"b", b"c", None]), min_size=1, max_size=40),
    data=st.data(),
)
def test_each_key_runs_one_at_a_time_in_offer_order(keys: list[bytes | None], data: st.DataObject) -> None:
    """Whatever order running items finish in, each key's items start in offer order, never two at once."""
    gate: KeyGate[int] = KeyGate()
    running: list[int] = []
    started: list[int] = []
    for i, key in enumerate(keys):
        if gate.offer(key, i):
            running.append(i)
            started.append(i)
    while running:
        finished = data.draw(st.sampled_from(running), label="finishes")
        running.remove(finished)
        nxt = gate.release(keys[finished])
        if nxt is not None:
            assert keys[nxt] == keys[finished]
            running.append(nxt)
            started.append(nxt)
        busy = [keys[i] for i in running if keys[i] is not None]
        assert len(busy) == len(set(busy)), "two items of one key running at once"
    assert sorted(started) == list(range(len(keys))), "every item eventually ran"
    for key in set(keys):
        mine = [i for i in started if keys[i] == key]
        if key is not None:
            assert mine == sorted(mine)
