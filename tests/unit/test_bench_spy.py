"""Tests for bench.spy's summary of py-spy's raw stacks: self, total and per-module shares."""

from __future__ import annotations

import pytest

from bench.spy import module_of, parse_raw, render, summarise

TRUNK = "<module> (stream_service/__main__.py:1);BaseEventLoop._run_once (asyncio/base_events.py:1845)"
RAW = "\n".join(
    [
        f"{TRUNK};EpollSelector.select (selectors.py:451) 10",
        f"{TRUNK};Engine._run_batch (stream_service/engine.py:206);murmur2 (aiokafka/partitioner.py:33) 30",
        f"{TRUNK};Engine._run_batch (stream_service/engine.py:206);OutputEncoder.result "
        "(stream_service/pipeline/encode.py:118) 50",
        f"{TRUNK};Handle._run (asyncio/events.py:78) 20",
        "",
        "not a stack line",
    ]
)


def test_parse_raw_reads_collapsed_stacks_and_skips_other_lines() -> None:
    """Each ``frame;frame count`` line becomes a stack, outermost frame first."""
    stacks = parse_raw(RAW)
    assert [s.samples for s in stacks] == [10, 30, 50, 20]
    assert stacks[1].frames[-1] == "murmur2 (aiokafka/partitioner.py:33)"


@pytest.mark.parametrize(
    ("frame", "module"),
    [
        pytest.param(
            "f (stream_service/pipeline/encode.py:118)", "stream_service/pipeline/encode.py", id="ours"
        ),
        pytest.param("f (aiokafka/consumer/fetcher.py:209)", "aiokafka/consumer", id="aiokafka package"),
        pytest.param("murmur2 (aiokafka/partitioner.py:33)", "aiokafka/partitioner", id="aiokafka module"),
        pytest.param("Handle._run (asyncio/events.py:78)", "asyncio", id="asyncio"),
        pytest.param("decode (msgspec/json.py:1)", "msgspec", id="other library"),
    ],
)
def test_module_of_groups_frames(frame: str, module: str) -> None:
    """Our frames are grouped by file, aiokafka's by sub-package, the rest by top-level package."""
    assert module_of(frame) == module


def test_summary_counts_select_as_idle_and_leaves_the_trunk_out_of_total() -> None:
    """Shares are of the busy samples; select() is idle; frames on every stack are not in 'total'."""
    profile = summarise(parse_raw(RAW), top=10)
    assert (profile.samples, profile.idle) == (110, 10)
    assert [(s.name.split(" ")[0], s.samples) for s in profile.self_time] == [
        ("OutputEncoder.result", 50),
        ("murmur2", 30),
        ("Handle._run", 20),
    ]
    assert profile.total_time[0].name.startswith("Engine._run_batch") and profile.total_time[0].share == 0.8
    assert all("_run_once" not in s.name for s in profile.total_time)
    assert profile.by_module[0] == ("stream_service/pipeline/encode.py", 50, 0.5)
    text = render(profile, "py-spy: W1", expected=200)
    assert "110 samples of 200 expected (busy 50% of the time): 100 busy, 10 waiting" in text
    assert "| 50.0% | `OutputEncoder.result (stream_service/pipeline/encode.py:118)` |" in text
