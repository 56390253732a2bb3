"""The tools against a real broker: produce, report (streaming) and reconcile with their progress
line on a terminal, -b and -X on their command lines."""

from __future__ import annotations

import argparse
import asyncio
import io
import sys

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from stream_service.messages import Result
from stream_service.tools import produce, progress, reconcile, report
from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration

COUNT = 3_000


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Run one tool's handler with a terminal as stderr; its exit code and what stderr got."""
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    for tool in (produce, report, reconcile):
        tool.register(subparsers)
    args = parser.parse_args(argv)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = await asyncio.to_thread(args.handler, args)  # the handler runs its own event loop
    return code, terminal.getvalue()


async def test_tools_show_progress_on_a_terminal(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """produce, report and reconcile draw the progress line on a terminal and end it with the totals."""
    monkeypatch.setattr(progress, "LONG_WORK_S", 0.0)  # every run counts as long work here
    requests = await topic_factory(2, prefix="progress-in")
    results = await topic_factory(2, prefix="progress-results")
    errors = await topic_factory(1, prefix="progress-errors")
    common = ["-b", kafka_bootstrap, "-X", "fetch.max.wait.ms=100"]

    code, err = await _cli(["produce", *common, "-t", requests, "-c", str(COUNT)], monkeypatch)
    assert code == 0
    assert f"100%  sent {COUNT:,} of {COUNT:,} records" in err and err.endswith("\n")

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(COUNT):
            result = Result(
                id=f"r{i}", content="x" * 500, hrv_vector=None, processing_time=0.001 * (i % 50 + 1),
                tenant="t", profile_name="p",
            )  # fmt: skip
            await producer.send(results, msgspec.json.encode(result))
        await producer.flush()
    finally:
        await producer.stop()
    argv = ["report", *common, "--results-topic", results, "--errors-topic", errors]
    code, err = await _cli(argv, monkeypatch)
    assert code == 0
    assert f"100%  read {COUNT:,} of {COUNT:,} records" in err
    out = capsys.readouterr().out
    assert f"successful    {COUNT}" in out and "p95         0.0480 s" in out

    argv = ["reconcile", *common, "-t", requests, "--results-topic", results, "--errors-topic", errors]
    code, err = await _cli(argv, monkeypatch)
    assert code == 1  # these results carry no lineage: every input is missing
    assert f"read {2 * COUNT:,} of {2 * COUNT:,} records" in err

    code, err = await _cli([*argv, "--json"], monkeypatch)
    assert code == 1 and err == ""  # --json: no progress line
