"""The demo end to end against a real broker: load, service, report, verdict, and Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stream_service.config import load_config
from stream_service.exit_codes import ExitCode
from stream_service.tools.demo import DemoOptions, DemoOutcome, DemoTopics, run_demo

pytestmark = pytest.mark.integration

_INTERRUPT_EXIT_TIMEOUT_S = 60.0

DemoRunner = Callable[..., Coroutine[Any, Any, tuple[DemoOutcome, str, str]]]


@pytest.fixture
async def demo(kafka_bootstrap: str) -> AsyncIterator[DemoRunner]:
    """Runs the demo on the shared broker and deletes the topics it created afterwards."""
    created: list[DemoTopics] = []

    async def run(options: DemoOptions) -> tuple[DemoOutcome, str, str]:
        out, err = io.StringIO(), io.StringIO()
        base = load_config(environ={}, flags={"kafka.bootstrap_servers": kafka_bootstrap})
        outcome = await run_demo(base, options, bootstrap=kafka_bootstrap, out=out, err=err)
        if outcome.topics is not None:
            created.append(outcome.topics)
        return outcome, out.getvalue(), err.getvalue()

    yield run
    await _delete_topics(kafka_bootstrap, created)


async def _delete_topics(bootstrap: str, runs: list[DemoTopics]) -> None:
    if not runs:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name for topics in runs for name in topics[:3]])
    finally:
        await admin.close()


async def test_demo_answers_every_request_and_prints_report_and_verdict(demo: DemoRunner) -> None:
    """A small demo exits 0, its report counts every request and the verdict finds nothing missing."""
    outcome, out, err = await demo(DemoOptions(count=500, timeout_s=120.0))

    assert outcome.exit_code == 0, err
    assert outcome.service_exit == 0  # the service task ended, after draining
    assert not outcome.interrupted and not outcome.timed_out
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    produced = outcome.produced
    assert produced is not None and produced.sent == 500
    bad = sum(produced.bad.values())
    assert produced.duplicates > 0 and bad > 0
    assert outcome.answered >= 500

    report = outcome.report
    assert report is not None
    assert report.overview.total == 500
    assert report.overview.failed == bad  # every bad record, and only those, became an error
    assert report.cache.hits > 0  # the duplicates were answered from the cache
    assert {s.profile for s in report.hrv} == {
        "neutral_professional",
        "creative_storytelling",
        "marketing_enthusiastic",
        "tech_startup",
    }
    assert all(s.with_hrv == s.count for s in report.hrv)

    verdict = outcome.verdict
    assert verdict is not None and verdict.ok
    assert (verdict.expected, verdict.answered, verdict.missing) == (500, 500, 0)

    assert "OVERVIEW" in out and "total         500" in out
    assert "RECONCILE" in out and "OK: 500/500 inputs answered, 0 missing" in out
    assert "demo OK: 500/500 requests answered" in err
    assert "100%" in err  # the final progress line


async def test_demo_timeout_stops_the_service_and_reports_missing(demo: DemoRunner) -> None:
    """When the timeout expires before all is answered the service is stopped and the demo exits 1."""
    # Paced to take 6 s, stopped after 2: the producer is cancelled while it sends, not while it
    # connects, so it closes its connections.
    outcome, out, err = await demo(DemoOptions(count=300, rate=50.0, timeout_s=2.0))

    assert outcome.timed_out
    assert outcome.service_exit == 0  # stopped on request, not crashed
    assert outcome.exit_code == 1
    assert outcome.produced is None  # cancelled before it sent everything
    assert outcome.verdict is not None and outcome.report is not None  # still reported
    assert "timed out" in err and "demo FAILED" in err and "RECONCILE" in out


def _consumed(progress_line: str) -> int:
    match = re.search(r"consumed ([\d,]+)", progress_line)
    return int(match[1].replace(",", "")) if match else 0


async def test_ctrl_c_stops_the_demo_and_exits_130(kafka_bootstrap: str) -> None:
    """SIGINT during the run stops the service and the producer; the command exits 130 promptly."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "stream_service", "demo", "--count", "100000", "--rate", "500"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        # Progress lines come every 5 s off a terminal; one with records consumed means the
        # service runs and owns SIGINT, so this exercises its drain, not an early cancel.
        while not any(_consumed(line) for line in seen):
            line = (await proc.stderr.readline()).decode()
            assert line, "the demo ended early:\n" + "".join(seen)
            seen.append(line)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(_INTERRUPT_EXIT_TIMEOUT_S):
            _, rest = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if match := re.search(r"demo-requests-(\w+)", "".join(seen)):
            await _delete_topics(kafka_bootstrap, [DemoTopics.fresh(match[1])])
    assert proc.returncode == ExitCode.INTERRUPTED, "".join(seen) + rest.decode()
    assert "interrupted: the service drained and stopped" in rest.decode()
