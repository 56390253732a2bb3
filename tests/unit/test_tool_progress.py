"""The tools' progress line: on a terminal, for long work, never with --json; fed by produce and scans."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import msgspec
import pytest

from stream_service.messages import Result
from stream_service.tools import progress, report
from stream_service.tools.produce import produce_requests
from stream_service.tools.progress import ProgressLine, Work, WorkMeter, format_progress, tool_progress
from tests.fakes import FakeClock
from tests.unit.test_produce_pacing import SteppedProducer


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_work_line_has_the_figures_and_a_steady_bar() -> None:
    """The line reads 'read 500 of 1,000 records' with a rate and elapsed time; the bar fits the width."""
    work = Work("read", "records", 500, 1_000, 65.0)
    plain = format_progress(work, 250.0)
    assert plain == " 50%  read 500 of 1,000 records  250/s  1:05"
    drawn = format_progress(work, 250.0, width=80)
    assert drawn.startswith("[") and len(drawn) <= 80
    later = format_progress(work._replace(done=999), 99_999.0, width=80)
    assert later.index("]") == drawn.index("]")  # the bar does not move as the figures grow


@pytest.mark.parametrize(
    ("stream", "json_output", "shown"),
    [
        pytest.param(FakeTerminal(), False, True, id="terminal"),
        pytest.param(FakeTerminal(), True, False, id="terminal with --json"),
        pytest.param(io.StringIO(), False, False, id="pipe or file"),
    ],
)
def test_line_only_on_a_terminal_without_json(stream: io.StringIO, json_output: bool, shown: bool) -> None:
    """A tool gets a progress line on a terminal only, and never in --json mode."""
    assert (tool_progress(stream, json_output=json_output) is not None) is shown


def test_meter_draws_only_long_work_and_finishes_the_line() -> None:
    """Nothing is drawn in the first second; after it the line is redrawn in place and finished."""
    out, clock = FakeTerminal(), FakeClock(start=0.0)
    line = ProgressLine(out, tty=True, interval_s=0.0, clock=clock, columns=lambda: 100)
    meter = WorkMeter(line, "read", delay_s=1.0, clock=clock)
    meter.expect(1_000)
    clock.advance(0.5)
    meter.advance(100)
    assert out.getvalue() == ""
    clock.advance(1.0)
    meter.advance(400)
    assert "read 500 of 1,000 records" in out.getvalue() and "\n" not in out.getvalue()
    meter.advance(500)
    meter.finish()
    assert out.getvalue().endswith("\n") and "100%  read 1,000 of 1,000 records" in out.getvalue()


def test_quick_work_leaves_no_trace() -> None:
    """Work done before the delay never draws, and finish() then writes nothing."""
    out, clock = FakeTerminal(), FakeClock(start=0.0)
    meter = WorkMeter(ProgressLine(out, tty=True, clock=clock), "sent", delay_s=1.0, clock=clock)
    meter.expect(10)
    meter.advance(10)
    meter.finish()
    assert out.getvalue() == ""


async def test_produce_counts_every_record_into_the_meter() -> None:
    """produce_requests tells the meter the count up front and each chunk handed to the producer."""
    producer = SteppedProducer(FakeClock(start=0.0), ack_latency_s=0.001)
    meter = WorkMeter(None, "sent")
    stats = await produce_requests("fake:9092", "in", 12_000, make_producer=producer, meter=meter)
    assert stats.sent == meter.done == meter.expected == 12_000


def test_report_json_on_a_terminal_prints_no_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """report --json keeps stderr clean even on a terminal and for long work."""
    path = tmp_path / "out.jsonl"
    result = Result(id="r", content="c", hrv_vector=None, processing_time=0.1, tenant="t", profile_name="p")
    path.write_bytes(msgspec.json.encode(result) + b"\n")
    monkeypatch.setattr(progress, "LONG_WORK_S", 0.0)
    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers())
    args = parser.parse_args(["report", "--file", str(path), "--json"])
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert args.handler(args) == 0
    assert terminal.getvalue() == ""
    assert '"successful": 1' in capsys.readouterr().out
