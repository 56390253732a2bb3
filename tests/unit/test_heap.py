"""The garbage collector's policy: thresholds from the setting, start-up objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stream_service import heap
from stream_service.config import load_config


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    """Each test leaves the interpreter's collector as it found it."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_the_young_threshold_comes_from_the_setting() -> None:
    """runtime.gc_young_threshold sets the young generation's threshold; the older keep CPython's."""
    config = load_config(environ={"STREAM_SERVICE_RUNTIME__GC_YOUNG_THRESHOLD": "12345"})
    heap.apply_policy(config.runtime.gc_young_threshold)
    assert gc.get_threshold() == (12345, 10, 10)


def test_the_default_is_far_above_cpythons() -> None:
    """By default young passes come every 50,000 allocations, not 700."""
    assert load_config(environ={}).runtime.gc_young_threshold == heap.DEFAULT_YOUNG_THRESHOLD == 50_000


def test_freezing_moves_what_is_alive_out_of_the_collectors_reach() -> None:
    """After freeze_startup the objects alive are in the permanent generation, not collected."""
    before = gc.get_freeze_count()
    alive = [[] for _ in range(1000)]
    heap.freeze_startup()
    assert gc.get_freeze_count() >= before + len(alive)
