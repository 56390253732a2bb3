"""A live progress line: one self-redrawing line on a terminal, plain periodic lines elsewhere.

The formatting is pure functions of a snapshot (unit-tested without a terminal): the demo's
:class:`Progress` (requests consumed and answered) or a tool's :class:`Work` (records read or
sent); :class:`RateMeter` turns counter samples into a rate over a sliding window;
:class:`ProgressLine` decides when and how to write; :class:`WorkMeter` is what a tool's long
work counts into. Time is always passed in or injected.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import deque
from collections.abc import Callable
from typing import IO, NamedTuple

__all__ = [
    "Progress",
    "ProgressLine",
    "RateMeter",
    "Work",
    "WorkMeter",
    "format_count",
    "format_elapsed",
    "format_percent",
    "format_progress",
    "render_bar",
]

DEFAULT_RATE_WINDOW_S = 3.0
TTY_INTERVAL_S = 0.25  # about four redraws a second: smooth, and cheap
PLAIN_INTERVAL_S = 5.0  # a log file or a pipe gets one line every few seconds, not a flood
_MIN_BAR_WIDTH = 10
_MAX_BAR_WIDTH = 30
_FALLBACK_COLUMNS = 80
_WIDEST_RATE_PER_S = 99_999.0


class Progress(NamedTuple):
    """Counters at one moment: requests expected, records consumed, outputs published."""

    expected: int
    consumed: int
    results: int
    errors: int
    elapsed_s: float

    @property
    def answered(self) -> int:
        """Inputs answered so far: every input gets exactly one result or one error record."""
        return self.results + self.errors

    @property
    def fraction(self) -> float:
        """Share of the expected inputs answered, within [0, 1] (1 when nothing is expected)."""
        if self.expected <= 0:
            return 1.0
        return min(1.0, max(0.0, self.answered / self.expected))

    def figures(self, rate_per_s: float) -> str:
        """The figures of the line, without the bar."""
        return (
            f"{format_percent(self.fraction)}  consumed {format_count(self.consumed)}"
            f"  results {format_count(self.results)}  errors {format_count(self.errors)}"
            f"  {rate_per_s:,.0f} msg/s  {format_elapsed(self.elapsed_s)}"
        )

    def widest(self) -> Progress:
        """The snapshot with every count at its largest expected value (sizes the bar)."""
        n = self.expected
        return Progress(n, max(n, self.consumed), max(n, self.results), max(n, self.errors), self.elapsed_s)


class Work(NamedTuple):
    """A tool's long work at one moment: ``done`` of ``expected`` units, e.g. records read."""

    verb: str  # "read", "sent"
    unit: str  # "records"
    done: int
    expected: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        """Share of the expected units done, within [0, 1] (1 when nothing is expected)."""
        if self.expected <= 0:
            return 1.0
        return min(1.0, max(0.0, self.done / self.expected))

    def figures(self, rate_per_s: float) -> str:
        """The figures of the line, without the bar."""
        return (
            f"{format_percent(self.fraction)}  {self.verb} {format_count(self.done)}"
            f" of {format_count(self.expected)} {self.unit}  {rate_per_s:,.0f}/s"
            f"  {format_elapsed(self.elapsed_s)}"
        )

    def widest(self) -> Work:
        """The snapshot at its largest expected count (sizes the bar)."""
        return self._replace(done=max(self.done, self.expected))


class RateMeter:
    """Events per second over the last ``window_s`` seconds, from samples of a growing counter.

    Feed it ``(now_s, total)`` pairs with non-decreasing ``now_s``; :meth:`rate` is 0 until two
    samples span some time. A counter that goes backwards (a restart) starts the window over.
    """

    def __init__(self, window_s: float = DEFAULT_RATE_WINDOW_S) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def observe(self, now_s: float, total: float) -> None:
        samples = self._samples
        if samples and total < samples[-1][1]:
            samples.clear()
        samples.append((now_s, total))
        # Keep one sample at or beyond the window's start, so the span covers the whole window.
        while len(samples) > 2 and samples[1][0] <= now_s - self.window_s:
            samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (first_s, first), (last_s, last) = self._samples[0], self._samples[-1]
        span_s = last_s - first_s
        return (last - first) / span_s if span_s > 0 else 0.0


def format_count(n: int) -> str:
    """``12345`` -> ``12,345``."""
    return f"{n:,}"


def format_elapsed(seconds: float) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` above; negative durations count as zero."""
    total = int(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_bar(fraction: float, width: int) -> str:
    """``[#####.....]`` with ``width`` cells inside the brackets; ASCII, so any terminal shows it."""
    cells = max(0, width)
    filled = math.floor(min(1.0, max(0.0, fraction)) * cells)  # full only when done
    return "[" + "#" * filled + "." * (cells - filled) + "]"


def format_percent(fraction: float) -> str:
    """Whole percent, rounded down: ``100%`` only when everything is done."""
    return f"{math.floor(min(1.0, max(0.0, fraction)) * 100):3d}%"


def format_progress(progress: Progress | Work, rate_per_s: float, width: int | None = None) -> str:
    """The progress line; with ``width`` it never exceeds ``width`` characters.

    Without ``width`` (logs, pipes) there is no bar: the figures alone, nothing to clip. With
    it, a bar of 10 to 30 cells leads the line when there is room for one (86 columns
    for 20,000 requests); otherwise the figures are shown alone, cut if they must be.
    """
    figures = progress.figures(rate_per_s)
    if width is None:
        return figures
    # The bar's width comes from the line as long as it will get (every count at the expected
    # total, a five-digit rate), so the bar does not shrink as the figures grow.
    widest = progress.widest().figures(max(rate_per_s, _WIDEST_RATE_PER_S))
    room = width - len(widest) - 3  # brackets and a space
    if room < _MIN_BAR_WIDTH:
        return figures[: max(0, width)]
    return f"{render_bar(progress.fraction, min(room, _MAX_BAR_WIDTH))} {figures}"[:width]


def _terminal_columns() -> int:
    return shutil.get_terminal_size((_FALLBACK_COLUMNS, 24)).columns


class ProgressLine:
    """Writes progress to ``stream``: redrawn in place on a terminal, periodic lines otherwise.

    Guarantees: on a terminal the line never wraps (it is kept one column short of the width,
    so ``\\r`` returns to its start) and a shorter line erases the longer one before it;
    :meth:`note` prints a message above the line without leaving a half-drawn line behind;
    :meth:`finish` always writes the final figures and ends the line.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        tty: bool | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        columns: Callable[[], int] = _terminal_columns,
    ) -> None:
        self._stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval_s = (
            interval_s if interval_s is not None else TTY_INTERVAL_S if self.tty else PLAIN_INTERVAL_S
        )
        self._clock = clock
        self._columns = columns
        self._last_written_s: float | None = None
        self._drawn = ""  # what is on the terminal line now (tty only)

    def update(self, progress: Progress | Work, rate_per_s: float) -> None:
        """Show ``progress`` if a refresh is due (at most once per ``interval_s``)."""
        now = self._clock()
        if self._last_written_s is not None and now - self._last_written_s < self.interval_s:
            return
        self._last_written_s = now
        self._write(progress, rate_per_s)

    def note(self, text: str) -> None:
        """Print ``text`` on its own line; on a terminal the progress line is redrawn below it."""
        if self.tty and self._drawn:
            drawn = self._drawn
            self._stream.write("\r" + " " * len(drawn) + "\r" + text + "\n" + drawn)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self, progress: Progress | Work, rate_per_s: float) -> None:
        """Write the final figures and end the line."""
        self._write(progress, rate_per_s)
        if self.tty:
            self._stream.write("\n")
            self._drawn = ""
        self._stream.flush()

    def end(self) -> None:
        """End a drawn terminal line where it stands (after a failure, so messages start clean)."""
        if self.tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = ""

    def _write(self, progress: Progress | Work, rate_per_s: float) -> None:
        if not self.tty:
            self._stream.write(format_progress(progress, rate_per_s) + "\n")
            self._stream.flush()
            return
        line = format_progress(progress, rate_per_s, width=self._columns() - 1)
        padding = " " * max(0, len(self._drawn) - len(line))
        self._stream.write("\r" + line + padding)
        self._stream.flush()
        self._drawn = line


LONG_WORK_S = 1.0  # a tool's line appears once its work has taken this long (quick runs stay quiet)


def tool_progress(stream: IO[str], *, json_output: bool = False) -> ProgressLine | None:
    """The progress line of a tool's long work: on a terminal only, never with ``--json``."""
    if json_output or not stream.isatty():
        return None
    return ProgressLine(stream, tty=True)


class WorkMeter:
    """What a tool's long work counts into: units expected and done, drawn on ``line`` (if any)
    once the work has taken ``delay_s``; :meth:`finish` ends a line that was drawn."""

    def __init__(
        self,
        line: ProgressLine | None,
        verb: str,
        unit: str = "records",
        *,
        delay_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.line = line
        self.verb, self.unit = verb, unit
        self.expected = 0
        self.done = 0
        self.delay_s = LONG_WORK_S if delay_s is None else delay_s
        self._clock = clock
        self._started = clock()
        self._rate = RateMeter()
        self.drawn = False

    def snapshot(self) -> Work:
        return Work(self.verb, self.unit, self.done, self.expected, self._clock() - self._started)

    def expect(self, count: int) -> None:
        """More units are to be done (a scan learnt its end offsets)."""
        self.expected += count

    def advance(self, count: int) -> None:
        """``count`` more units are done; redraws the line when one is due."""
        self.done += count
        if self.line is None:
            return
        work = self.snapshot()
        self._rate.observe(work.elapsed_s, self.done)
        if work.elapsed_s >= self.delay_s:
            self.line.update(work, self._rate.rate())
            self.drawn = True

    def finish(self) -> None:
        """Write the final figures and end the line, if the line was ever drawn."""
        if self.line is not None and self.drawn:
            work = self.snapshot()
            self.line.finish(work, self.done / work.elapsed_s if work.elapsed_s > 0 else 0.0)
            self.drawn = False
