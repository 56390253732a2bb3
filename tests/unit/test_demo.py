"""Tests for the demo's pure parts: the progress line, the rate meter, the tenant mix, the config."""

from __future__ import annotations

import io
import os
import signal
import threading

import pytest

from stream_service.cli import build_parser, main
from stream_service.config import load_config
from stream_service.exit_codes import ExitCode
from stream_service.observability.metrics import Metrics
from stream_service.tools.demo import (
    BASE_TIMEOUT_S,
    DemoOptions,
    DemoTopics,
    read_counters,
    run_demo,
    service_config,
    tenant_mix,
)
from stream_service.tools.progress import (
    Progress,
    ProgressLine,
    RateMeter,
    format_count,
    format_elapsed,
    format_percent,
    format_progress,
    render_bar,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _progress(answered: int = 50, expected: int = 100, errors: int = 0, elapsed_s: float = 7.0) -> Progress:
    return Progress(expected, answered + 5, answered - errors, errors, elapsed_s)


# ---------------------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0.0, "0:00", id="zero"),
        pytest.param(7.9, "0:07", id="seconds are truncated"),
        pytest.param(65.0, "1:05", id="minutes"),
        pytest.param(3725.0, "1:02:05", id="hours"),
        pytest.param(-3.0, "0:00", id="negative counts as zero"),
    ],
)
def test_format_elapsed(seconds: float, text: str) -> None:
    """Elapsed time reads m:ss, or h:mm:ss past an hour."""
    assert format_elapsed(seconds) == text


def test_format_count_groups_thousands() -> None:
    """Counts carry thousands separators."""
    assert format_count(20000) == "20,000"
    assert format_count(7) == "7"


@pytest.mark.parametrize(
    ("fraction", "bar"),
    [
        pytest.param(0.0, "[..........]", id="empty"),
        pytest.param(0.5, "[#####.....]", id="half"),
        pytest.param(0.999, "[#########.]", id="full only when done"),
        pytest.param(1.0, "[##########]", id="done"),
        pytest.param(1.7, "[##########]", id="clamped above"),
        pytest.param(-1.0, "[..........]", id="clamped below"),
    ],
)
def test_render_bar(fraction: float, bar: str) -> None:
    """The bar has exactly ``width`` cells, filled in proportion and rounded down."""
    assert render_bar(fraction, 10) == bar


def test_percent_reaches_100_only_when_done() -> None:
    """99.9 % shows as 99 %, so 100 % means every input was answered."""
    assert format_percent(0.999) == " 99%"
    assert format_percent(1.0) == "100%"
    assert format_percent(0.0) == "  0%"


def test_progress_fraction_and_answered() -> None:
    """Answered counts results and errors; the fraction is clamped and 1 when nothing is expected."""
    p = Progress(expected=200, consumed=120, results=90, errors=10, elapsed_s=1.0)
    assert p.answered == 100
    assert p.fraction == 0.5
    assert Progress(10, 30, 30, 0, 1.0).fraction == 1.0
    assert Progress(0, 0, 0, 0, 1.0).fraction == 1.0


def test_format_progress_plain_has_every_figure_and_no_bar() -> None:
    """Without a width the line holds percent, consumed, results, errors, rate and elapsed, no bar."""
    line = format_progress(Progress(20000, 12345, 9000, 100, 65.0), 2345.6)
    assert line == " 45%  consumed 12,345  results 9,000  errors 100  2,346 msg/s  1:05"


@pytest.mark.parametrize("width", [60, 80, 100, 200], ids=lambda w: f"{w} columns")
def test_format_progress_fits_the_width(width: int) -> None:
    """With a width the line never exceeds it; a bar is shown when there is room for one."""
    line = format_progress(Progress(20000, 12345, 9000, 100, 65.0), 2345.6, width=width)
    assert len(line) <= width
    figures = format_progress(Progress(20000, 12345, 9000, 100, 65.0), 2345.6)
    if width >= 100:
        assert line.startswith("[") and line.endswith(figures)
    elif width <= 80:
        assert "[" not in line and line == figures[:width]


def test_bar_width_stays_put_as_the_figures_grow() -> None:
    """From the first to the last update the bar keeps its width, so the line does not jitter."""
    widths = set()
    for answered in (0, 9, 99, 999, 9_999, 20_000):
        errors = answered // 100
        progress = Progress(20_000, answered, answered - errors, errors, 5.0)
        line = format_progress(progress, float(answered), width=100)
        widths.add(line.index("]"))
    assert len(widths) == 1


# ---------------------------------------------------------------------------------------- rate meter


def test_rate_meter_is_zero_until_time_passes() -> None:
    """One sample, or samples at the same instant, give no rate."""
    meter = RateMeter(window_s=2.0)
    assert meter.rate() == 0.0
    meter.observe(10.0, 100)
    meter.observe(10.0, 200)
    assert meter.rate() == 0.0


def test_rate_meter_uses_the_recent_window() -> None:
    """The rate reflects the last window: a fast start does not inflate a slow present."""
    meter = RateMeter(window_s=2.0)
    meter.observe(0.0, 0)
    meter.observe(1.0, 1000)  # 1000/s early on
    for t in range(2, 11):
        meter.observe(float(t), 1000 + 10 * (t - 1))  # then 10/s
    assert meter.rate() == pytest.approx(10.0)


def test_rate_meter_restarts_when_the_counter_goes_back() -> None:
    """A counter that restarts from a lower value does not produce a negative rate."""
    meter = RateMeter(window_s=5.0)
    meter.observe(0.0, 500)
    meter.observe(1.0, 10)
    meter.observe(2.0, 30)
    assert meter.rate() == pytest.approx(20.0)


def test_rate_meter_rejects_a_non_positive_window() -> None:
    """A zero window is a configuration mistake, refused at once."""
    with pytest.raises(ValueError, match="window_s"):
        RateMeter(window_s=0)


# ---------------------------------------------------------------------------------------- the line


def test_progress_line_on_a_terminal_redraws_in_place_at_most_every_interval() -> None:
    """On a TTY each update starts with a carriage return, and updates within the interval are skipped."""
    out, clock = io.StringIO(), FakeClock()
    line = ProgressLine(out, tty=True, interval_s=0.25, clock=clock, columns=lambda: 100)
    line.update(_progress(10), 5.0)
    clock.now += 0.1
    line.update(_progress(20), 5.0)  # too soon: skipped
    clock.now += 0.2
    line.update(_progress(30), 5.0)
    text = out.getvalue()
    assert text.count("\r") == 2 and "\n" not in text
    assert "results 20" not in text and "results 30" in text
    assert all(len(part) <= 99 for part in text.split("\r"))


def test_progress_line_pads_over_a_longer_previous_line() -> None:
    """A shorter line overwrites every character of the longer one drawn before it."""
    out, clock = io.StringIO(), FakeClock()
    line = ProgressLine(out, tty=True, interval_s=0.0, clock=clock, columns=lambda: 200)
    line.update(Progress(10**6, 10**6, 999_999, 1, 3600.0), 123456.0)
    first = out.getvalue()
    line.update(Progress(10, 1, 1, 0, 1.0), 1.0)
    second = out.getvalue()[len(first) :]
    assert len(second) == len(first)


def test_progress_line_note_keeps_the_line_below_the_message() -> None:
    """A note on a TTY erases the line, prints the message on its own line, then redraws the line."""
    out, clock = io.StringIO(), FakeClock()
    line = ProgressLine(out, tty=True, interval_s=0.0, clock=clock, columns=lambda: 120)
    line.update(_progress(10), 1.0)
    drawn = out.getvalue().removeprefix("\r")
    line.note("produced 100 requests")
    after = out.getvalue()[len(drawn) + 1 :]
    assert after == "\r" + " " * len(drawn) + "\rproduced 100 requests\n" + drawn


def test_progress_line_plain_writes_whole_lines_periodically() -> None:
    """Off a terminal each shown update is a full line, at most one per interval, and finish always shows."""
    out, clock = io.StringIO(), FakeClock()
    line = ProgressLine(out, tty=False, interval_s=5.0, clock=clock)
    line.update(_progress(10), 1.0)
    clock.now += 1.0
    line.update(_progress(20), 1.0)  # skipped
    line.note("hello")
    clock.now += 5.0
    line.update(_progress(30), 1.0)
    line.finish(_progress(100), 3.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert "results 10" in lines[0] and lines[1] == "hello" and "results 30" in lines[2]
    assert lines[3].startswith("100%") and "\r" not in out.getvalue()


def test_progress_line_finish_ends_the_terminal_line() -> None:
    """finish() draws the final figures and ends with a newline, so later output starts clean."""
    out = io.StringIO()
    line = ProgressLine(out, tty=True, clock=FakeClock(), columns=lambda: 120)
    line.finish(_progress(100), 9.0)
    assert out.getvalue().startswith("\r[") and out.getvalue().endswith("\n")


def test_progress_line_end_closes_a_drawn_line_once() -> None:
    """end() moves past a drawn terminal line once, and does nothing when no line is drawn."""
    out = io.StringIO()
    line = ProgressLine(out, tty=True, interval_s=0.0, clock=FakeClock(), columns=lambda: 120)
    line.end()
    assert out.getvalue() == ""
    line.update(_progress(10), 1.0)
    line.end()
    line.end()
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_progress_line_defaults_to_the_stream_being_a_terminal() -> None:
    """Without ``tty`` the stream decides: a StringIO is no terminal, so lines are plain."""
    line = ProgressLine(io.StringIO())
    assert line.tty is False and line.interval_s == 5.0


# ---------------------------------------------------------------------------------------- demo parts


def test_tenant_mix_is_uneven() -> None:
    """N tenants get weights N..1: four tenants share 40/30/20/10 %."""
    names, weights = tenant_mix(4)
    assert names == ["tenant-0", "tenant-1", "tenant-2", "tenant-3"]
    assert [w / sum(weights) for w in weights] == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert tenant_mix(1) == (["tenant-0"], [1.0])


def test_fresh_topics_are_unique_and_named_after_the_run() -> None:
    """Every run gets new topic and group names sharing one suffix."""
    first, second = DemoTopics.fresh(), DemoTopics.fresh()
    assert first != second
    expected = DemoTopics("demo-requests-abc", "demo-results-abc", "demo-errors-abc", "demo-abc")
    assert DemoTopics.fresh("abc") == expected


@pytest.mark.parametrize(
    ("options", "seconds"),
    [
        pytest.param(DemoOptions(), BASE_TIMEOUT_S, id="as fast as possible"),
        pytest.param(DemoOptions(count=1000, rate=10.0), BASE_TIMEOUT_S + 100.0, id="paced adds send time"),
        pytest.param(DemoOptions(rate=10.0, timeout_s=5.0), 5.0, id="explicit wins"),
    ],
)
def test_effective_timeout(options: DemoOptions, seconds: float) -> None:
    """The default timeout leaves room for a paced producer; an explicit one is used as given."""
    assert options.effective_timeout_s() == pytest.approx(seconds)


def test_service_config_points_at_the_demo_and_keeps_the_rest() -> None:
    """The service config uses the demo's broker and topics, HRV and counters on, no metrics port."""
    base = load_config(
        environ={}, flags={"executor.kind": "thread", "observability.metrics": False, "processor.hrv": False}
    )
    topics = DemoTopics.fresh("x")
    config = service_config(base, "127.0.0.1:1234", topics)
    assert config.kafka.bootstrap_servers == "127.0.0.1:1234"
    assert (config.topics.input, config.topics.results, config.topics.errors) == topics[:3]
    assert config.topics.group_id == "demo-x"
    assert config.processor.hrv is True and config.processor.name == "resonance"
    assert config.observability.metrics is True and config.observability.metrics_port is None
    assert config.executor.kind == "thread"  # what the user chose stays


def test_read_counters_from_the_service_metrics() -> None:
    """Consumed and published-per-topic counts are read back from a service's own registry."""
    metrics = Metrics()
    assert read_counters(metrics.registry, "res", "err") == (0, 0, 0)
    metrics.consumed_total.inc(10)
    metrics.published_total.labels(topic="res").inc(7)
    metrics.published_total.labels(topic="err").inc(2)
    metrics.published_total.labels(topic="other").inc(50)
    assert read_counters(metrics.registry, "res", "err") == (10, 7, 2)


def test_demo_arguments_parse_with_defaults() -> None:
    """``stream-service demo`` defaults to 20,000 requests from 4 tenants, as fast as possible."""
    args = build_parser().parse_args(["demo"])
    assert (args.count, args.tenants, args.rate, args.timeout) == (20000, 4, 0.0, None)
    assert args.keep_broker is False
    args = build_parser().parse_args(
        ["demo", "--count", "500", "--rate", "100", "--executor", "process", "--keep-broker"]
    )
    assert (args.count, args.rate, args.executor, args.keep_broker) == (500, 100.0, "process", True)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--count", "0"], id="zero count"),
        pytest.param(["--rate", "-1"], id="negative rate"),
        pytest.param(["--tenants", "many"], id="not a number"),
        pytest.param(["--executor", "fibre"], id="unknown executor"),
    ],
)
def test_demo_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid options stop at parsing with a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["demo", *argv])
    assert exc.value.code == 2
    assert "demo" in capsys.readouterr().err


def test_demo_reports_a_config_error_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A configuration problem exits 2 with one line naming it, before anything is started."""
    code = main(["demo", "--config", "/nonexistent/demo.toml"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("demo: ") and "/nonexistent/demo.toml" in err and err.count("\n") == 1


class BlockingBroker:
    """A broker whose start sends the process SIGINT and then blocks until stop() is called."""

    bootstrap_servers = "127.0.0.1:9"
    started_in_s: float | None = None

    def __init__(self) -> None:
        self.events: list[str] = []
        self._released = threading.Event()

    def start(self) -> BlockingBroker:
        self.events.append("start")
        os.kill(os.getpid(), signal.SIGINT)
        if not self._released.wait(timeout=10):
            self.events.append("start timed out")
        return self

    def stop(self) -> None:
        self.events.append("stop")
        self._released.set()


async def test_ctrl_c_while_the_broker_starts_stops_it_and_exits_130() -> None:
    """A signal during broker start-up cancels the demo, stops the broker it began, and returns 130."""
    fake = BlockingBroker()
    err = io.StringIO()
    base = load_config(environ={})
    outcome = await run_demo(
        base, DemoOptions(count=10), out=io.StringIO(), err=err, handle_signals=True, broker=lambda: fake
    )
    assert outcome.exit_code == ExitCode.INTERRUPTED and outcome.interrupted
    assert fake.events == ["start", "stop"]
    assert outcome.topics is None  # nothing after the broker was attempted
    assert "interrupted" in err.getvalue() and "stopping the local Kafka broker" in err.getvalue()
    # The handlers are gone again: SIGINT is back to raising KeyboardInterrupt.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
