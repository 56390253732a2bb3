"""What ``stream-service replay`` tells its operator: the summary (text or JSON) and the live line.

:class:`ReplaySummary` is built from the plan and from what was produced; :func:`render_text`
prints it (as a plan under ``--dry-run``). :class:`ReplayProgress` redraws one line on a
terminal while records are produced, and writes a plain line every few seconds elsewhere.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from typing import IO

import msgspec

from stream_service.tools.progress import (
    PLAIN_INTERVAL_S,
    TTY_INTERVAL_S,
    RateMeter,
    format_count,
    format_elapsed,
    format_percent,
    render_bar,
)
from stream_service.tools.replay_plan import NEEDS_ATTENTION, Failures, InputIndex, Plan, Skip

__all__ = ["ProduceFailure", "ReplayProgress", "ReplaySummary", "render_text", "summarise"]

_BAR_WIDTH = 20
_FALLBACK_COLUMNS = 80


class ProduceFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A replay Kafka did not acknowledge."""

    partition: int
    offset: int  # of the record it copies
    request_id: str | None
    error: str


class ReplaySummary(msgspec.Struct, kw_only=True):
    """One run: what was read, planned, produced and skipped; ``ok`` when nothing needs a person."""

    input_topic: str
    errors_topic: str
    error_types: list[str]
    dry_run: bool
    max_replays: int
    errors_read: int  # error records in the window, of any type
    errors_matched: dict[str, int]  # error records of the wanted types, per type
    unreadable_errors: int  # error records that could not be decoded (type unknown)
    inputs: int  # distinct inputs the matched error records name
    inputs_scanned: int  # input records read to find them and their replays
    planned: int
    planned_by_partition: dict[int, int]
    planned_by_type: dict[str, int]
    replayed: int = 0  # acknowledged by Kafka
    failed: int = 0  # not acknowledged
    skipped: dict[str, int] = {}  # reason -> count
    examples: list[Skip] = []  # the first few skips of each reason
    failures: list[ProduceFailure] = []
    elapsed_s: float = 0.0  # producing
    rate_per_s: float = 0.0
    ok: bool = True


def summarise(
    failures: Failures,
    found: InputIndex,
    plan: Plan,
    *,
    errors_topic: str,
    dry_run: bool,
    max_replays: int,
    replayed: int = 0,
    produce_failures: list[ProduceFailure] | None = None,
    elapsed_s: float = 0.0,
) -> ReplaySummary:
    """The summary of a run; ``ok`` unless a request is left without a replay (a skip in
    :data:`NEEDS_ATTENTION`, or a replay Kafka did not acknowledge)."""
    produce_failures = produce_failures or []
    by_partition = Counter(r.partition for r in plan.replays)
    by_type = Counter(r.error_type for r in plan.replays)
    attention = plan.skips.needing_attention() + len(produce_failures)
    return ReplaySummary(
        input_topic=failures.input_topic,
        errors_topic=errors_topic,
        error_types=sorted(failures.error_types),
        dry_run=dry_run,
        max_replays=max_replays,
        errors_read=failures.read,
        errors_matched=dict(sorted(failures.by_type.items())),
        unreadable_errors=failures.unreadable,
        inputs=len(failures.inputs),
        inputs_scanned=found.scanned,
        planned=len(plan.replays),
        planned_by_partition=dict(sorted(by_partition.items())),
        planned_by_type=dict(sorted(by_type.items())),
        replayed=replayed,
        failed=len(produce_failures),
        skipped=dict(sorted(plan.skips.counts.items())),
        examples=plan.skips.examples,
        failures=produce_failures[:10],
        elapsed_s=elapsed_s,
        rate_per_s=replayed / elapsed_s if elapsed_s > 0 else 0.0,
        ok=attention == 0,
    )


def _counts(counts: dict[str, int] | dict[int, int], separator: str = " ") -> str:
    return ", ".join(f"{key}{separator}{format_count(n)}" for key, n in counts.items())


def _left(attention: int) -> str:
    if attention == 0:
        return "every failed request found is replayed or was already"
    return f"{format_count(attention)} failed requests cannot be replayed (see above)"


def render_text(summary: ReplaySummary) -> str:
    """The run for a person: read, planned (or replayed), skipped with examples, a verdict."""
    s = summary
    matched = sum(s.errors_matched.values())
    lines = [
        f"errors topic {s.errors_topic}: {format_count(s.errors_read)} error records read, "
        f"{format_count(matched)} of the types {', '.join(s.error_types)}"
        + (f" ({_counts(s.errors_matched)})" if matched else ""),
        f"input topic {s.input_topic}: {format_count(s.inputs)} failed inputs, "
        f"{format_count(s.inputs_scanned)} records read to find them and their replays",
    ]
    if s.unreadable_errors:
        lines.append(f"note: {format_count(s.unreadable_errors)} error records could not be decoded")
    line = f"{'would replay' if s.dry_run else 'to replay'} {format_count(s.planned)}"
    if s.planned:
        line += f" ({_counts(s.planned_by_type)}); per partition {_counts(s.planned_by_partition, ': ')}"
    lines.append(line)
    skipped = sum(s.skipped.values())
    line = f"{'would skip' if s.dry_run else 'skipped'} {format_count(skipped)}"
    lines.append(line + (f" ({_counts(s.skipped)})" if skipped else ""))
    # Only the skips that leave a request unreplayed are listed; the JSON summary has all examples.
    for skip in (skip for skip in s.examples if skip.reason in NEEDS_ATTENTION):
        where = f"{skip.partition}/{skip.offset}" if skip.partition is not None else "-"
        lines.append(f"  {skip.reason:<16} {where:<12} {skip.request_id or '-':<24} {skip.detail}")
    for failure in s.failures:
        where = f"{failure.partition}/{failure.offset}"
        lines.append(f"  {'failed':<16} {where:<12} {failure.request_id or '-':<24} {failure.error}")
    attention = sum(n for reason, n in s.skipped.items() if reason in NEEDS_ATTENTION) + s.failed
    if s.dry_run:
        lines.append(f"DRY RUN: nothing produced; {_left(attention)}")
    elif not s.planned:
        lines.append(f"{'OK' if s.ok else 'INCOMPLETE'}: nothing to replay; {_left(attention)}")
    else:
        status = "OK" if s.ok else "INCOMPLETE"
        lines.append(
            f"{status}: replayed {format_count(s.replayed)}/{format_count(s.planned)} to {s.input_topic} "
            f"in {s.elapsed_s:.1f} s ({s.rate_per_s:,.0f}/s), {format_count(s.failed)} not acknowledged; "
            f"{_left(attention)}"
        )
    return "\n".join(lines) + "\n"


class ReplayProgress:
    """``[####....]  45%  replayed 120/300  failed 0  1,234 msg/s  0:03`` while records are produced.

    On a terminal the line is redrawn in place (about four times a second) and never wraps;
    elsewhere a plain line is written every few seconds. :meth:`finish` ends it.
    """

    def __init__(
        self,
        stream: IO[str],
        total: int,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        columns: Callable[[], int] = lambda: shutil.get_terminal_size((_FALLBACK_COLUMNS, 24)).columns,
    ) -> None:
        self._stream = stream
        self._total = total
        self.tty = stream.isatty() if tty is None else tty
        self._interval_s = TTY_INTERVAL_S if self.tty else PLAIN_INTERVAL_S
        self._clock = clock
        self._columns = columns
        self._started = clock()
        self._last: float | None = None
        self._meter = RateMeter()
        self._drawn = 0

    def line(self, done: int, failed: int) -> str:
        """The figures, with a bar in front on a terminal."""
        now = self._clock()
        self._meter.observe(now, done + failed)
        fraction = (done + failed) / self._total if self._total else 1.0
        figures = (
            f"{format_percent(fraction)}  replayed {format_count(done)}/{format_count(self._total)}"
            f"  failed {format_count(failed)}  {self._meter.rate():,.0f} msg/s"
            f"  {format_elapsed(now - self._started)}"
        )
        if not self.tty:
            return figures
        return f"{render_bar(fraction, _BAR_WIDTH)} {figures}"[: self._columns() - 1]

    def update(self, done: int, failed: int) -> None:
        """Show the counts if a refresh is due."""
        now = self._clock()
        if self._last is not None and now - self._last < self._interval_s:
            return
        self._last = now
        self._write(self.line(done, failed))

    def finish(self, done: int, failed: int) -> None:
        """Write the final counts and end the line."""
        self._write(self.line(done, failed))
        if self.tty:
            self._stream.write("\n")
            self._stream.flush()

    def _write(self, text: str) -> None:
        if self.tty:
            self._stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
            self._drawn = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
