"""``stream-service report``: what the service produced, in figures, with recommendations.

Reads results and errors from their topics (bounded by ``--since``/``--until`` or by the end
offsets captured at start) or from a JSONL file, and prints a :class:`Report` as text or JSON.
The analysis itself, :func:`analyse`, is a pure function over decoded records.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
from aiokafka.errors import KafkaError

from stream_service.clients import tools_options
from stream_service.errors import ConfigError, ToolError
from stream_service.exit_codes import ExitCode
from stream_service.messages import ErrorRecord, Result
from stream_service.processors.hrv import DIMENSION_NAMES
from stream_service.tools.connection import add_connection_arguments, tool_config
from stream_service.tools.outputs import load_jsonl, read_outputs
from stream_service.tools.scan import parse_time

__all__ = ["Report", "Thresholds", "analyse", "register", "render_text"]

_TOP_MESSAGES = 5
_MESSAGE_CHARS = 200

_ADVICE: dict[str, str] = {
    "validation": "fix the producers: their records fail validation (ErrorRecord.error names the field)",
    "profile": "add the missing profiles, or fix profile_name in the producers",
    "rate_limit": "raise limiter.tenant_rate / limiter.global_rate, or slow the producers down",
    "timeout": "raise executor.request_timeout_s, or make the processor faster",
    "memory": "give the workers more memory, or lower executor.concurrency",
    "connection": "check that the model endpoint (processor.http.base_url) is reachable and healthy",
    "crash": "a worker process keeps dying: read its logs (segfaults, OOM kills)",
    "too_large": "raise kafka.producer_max_request_size (and the topic's max.message.bytes), "
    "or shorten the outputs",
    "unknown": "the processor raises unclassified exceptions: see the most common messages above",
}


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    """When a figure deserves a recommendation."""

    min_success_rate: float = 0.95
    max_tail_ratio: float = 3.0  # p95 over mean processing time
    min_tail_samples: int = 20  # fewer results make p95 too noisy to judge
    min_throughput_per_s: float = 10.0
    dominant_error_share: float = 0.5
    max_backpressure_share: float = 0.1  # of the wall time
    max_backpressure_s: float = 60.0  # when the wall time is unknown


DEFAULT_THRESHOLDS = Thresholds()


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    successful: int
    failed: int
    success_rate: float | None


class Performance(msgspec.Struct, frozen=True, kw_only=True):
    """Processing time of successful results, in seconds; throughput in successes per second."""

    count: int
    total_s: float
    mean_s: float | None
    median_s: float | None
    p95_s: float | None
    p99_s: float | None
    min_s: float | None
    max_s: float | None
    wall_seconds: float | None
    throughput_per_s: float | None


class ProfileStats(msgspec.Struct, frozen=True, kw_only=True):
    """HRV of one profile's results: the mean of each dimension and of all eight."""

    profile: str
    count: int
    with_hrv: int
    mean_overall: float | None
    dimensions: dict[str, float]


class MessageCount(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    count: int


class ErrorAnalysis(msgspec.Struct, frozen=True, kw_only=True):
    by_type: dict[str, int]
    top_messages: list[MessageCount]


class CacheStats(msgspec.Struct, frozen=True, kw_only=True):
    hits: int
    hit_rate: float | None  # cached results over successful results


class Report(msgspec.Struct, frozen=True, kw_only=True):
    overview: Overview
    performance: Performance
    hrv: list[ProfileStats]
    errors: ErrorAnalysis
    cache: CacheStats
    backpressure_seconds: float | None = None
    skipped_records: int = 0  # records that could not be decoded (not in the figures)
    recommendations: list[str] = []


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of an ascending sequence."""
    rank = q * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def analyse(
    records: Iterable[Result | ErrorRecord],
    *,
    backpressure_seconds: float | None = None,
    wall_seconds: float | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Report:
    """Summarise results and errors; ``wall_seconds`` (if known and > 0) gives the throughput."""
    times: list[float] = []
    cached = 0
    hrv_sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(DIMENSION_NAMES))
    hrv_counts: Counter[str] = Counter()
    profile_counts: Counter[str] = Counter()
    error_types: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    for record in records:
        if isinstance(record, Result):
            times.append(record.processing_time)
            cached += record.cached
            profile_counts[record.profile_name] += 1
            if record.hrv_vector is not None:
                sums = hrv_sums[record.profile_name]
                for i, value in enumerate(record.hrv_vector):
                    sums[i] += value
                hrv_counts[record.profile_name] += 1
        else:
            error_types[record.error_type] += 1
            messages[record.error[:_MESSAGE_CHARS]] += 1
    successful, failed = len(times), sum(error_types.values())
    total = successful + failed
    overview = Overview(
        total=total,
        successful=successful,
        failed=failed,
        success_rate=successful / total if total else None,
    )
    performance = _performance(times, wall_seconds)
    hrv = [
        _profile_stats(profile, profile_counts[profile], hrv_counts[profile], hrv_sums.get(profile))
        for profile in sorted(profile_counts)
    ]
    errors = ErrorAnalysis(
        by_type=dict(sorted(error_types.items(), key=lambda item: (-item[1], item[0]))),
        top_messages=[MessageCount(message=m, count=n) for m, n in messages.most_common(_TOP_MESSAGES)],
    )
    cache = CacheStats(hits=cached, hit_rate=cached / successful if successful else None)
    report = Report(
        overview=overview,
        performance=performance,
        hrv=hrv,
        errors=errors,
        cache=cache,
        backpressure_seconds=backpressure_seconds,
    )
    return msgspec.structs.replace(report, recommendations=recommend(report, thresholds))


def _performance(times: list[float], wall_seconds: float | None) -> Performance:
    wall = wall_seconds if wall_seconds is not None and wall_seconds > 0 else None
    if not times:
        return Performance(
            count=0, total_s=0.0, mean_s=None, median_s=None, p95_s=None, p99_s=None,
            min_s=None, max_s=None, wall_seconds=wall, throughput_per_s=None,
        )  # fmt: skip
    ordered = sorted(times)
    total = math.fsum(ordered)
    return Performance(
        count=len(ordered),
        total_s=total,
        mean_s=total / len(ordered),
        median_s=percentile(ordered, 0.5),
        p95_s=percentile(ordered, 0.95),
        p99_s=percentile(ordered, 0.99),
        min_s=ordered[0],
        max_s=ordered[-1],
        wall_seconds=wall,
        throughput_per_s=len(ordered) / wall if wall is not None else None,
    )


def _profile_stats(profile: str, count: int, with_hrv: int, sums: list[float] | None) -> ProfileStats:
    if not with_hrv or sums is None:
        return ProfileStats(profile=profile, count=count, with_hrv=0, mean_overall=None, dimensions={})
    means = [s / with_hrv for s in sums]
    return ProfileStats(
        profile=profile,
        count=count,
        with_hrv=with_hrv,
        mean_overall=math.fsum(means) / len(means),
        dimensions=dict(zip(DIMENSION_NAMES, means, strict=True)),
    )


def recommend(report: Report, thresholds: Thresholds) -> list[str]:
    """Advice derived from the figures; empty when nothing stands out."""
    t = thresholds
    out: list[str] = []
    rate = report.overview.success_rate
    if rate is not None and rate < t.min_success_rate:
        out.append(
            f"Success rate is {rate:.1%}, below {t.min_success_rate:.0%}: "
            "see the error analysis for the causes."
        )
    perf = report.performance
    if (
        perf.count >= t.min_tail_samples
        and perf.mean_s
        and perf.p95_s is not None
        and perf.p95_s > t.max_tail_ratio * perf.mean_s
    ):
        out.append(
            f"p95 processing time ({perf.p95_s:.3f} s) is {perf.p95_s / perf.mean_s:.1f}x the mean "
            f"({perf.mean_s:.3f} s): a slow tail. Look for oversized prompts, retries or a struggling "
            "dependency; a lower batch.target_batch_ms keeps batches from waiting on slow requests."
        )
    if perf.throughput_per_s is not None and perf.throughput_per_s < t.min_throughput_per_s:
        out.append(
            f"Throughput is {perf.throughput_per_s:.1f} results/s, below {t.min_throughput_per_s:g}/s: "
            "if the input topic has lag, add replicas (up to its partition count) "
            "or raise executor.concurrency."
        )
    failed = report.overview.failed
    if failed:
        error_type, count = next(iter(report.errors.by_type.items()))
        if count / failed > t.dominant_error_share:
            advice = _ADVICE.get(error_type, "see the most common messages above")
            out.append(f"{error_type} errors are {count / failed:.0%} of all failures: {advice}.")
    pressure = report.backpressure_seconds
    if pressure is not None and pressure > 0:
        wall = perf.wall_seconds
        sustained = pressure > t.max_backpressure_share * wall if wall else pressure > t.max_backpressure_s
        if sustained:
            share = f" ({pressure / wall:.0%} of the time)" if wall else ""
            out.append(
                f"Sustained back-pressure: {pressure:.0f} s paused{share}. Add replicas (up to the "
                "input partition count), raise executor.concurrency or executor.max_in_flight, "
                "or raise the limiter rates."
            )
    return out


# ------------------------------------------------------------------------------------------ rendering


def _fmt(value: float | None, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _table(rows: Sequence[Sequence[str]], align: str = "", indent: str = "  ") -> list[str]:
    """Rows as aligned columns; ``align`` has one ``l``/``r`` per column (default: ``l`` then ``r``)."""
    if not rows:
        return []
    columns = len(rows[0])
    align = align or "l" + "r" * (columns - 1)
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def render_text(report: Report) -> str:
    """The report as a plain-text document of aligned tables."""
    o, p, c = report.overview, report.performance, report.cache
    lines = ["OVERVIEW"]
    lines += _table(
        [
            ("total", str(o.total)),
            ("successful", str(o.successful)),
            ("failed", str(o.failed)),
            ("success rate", _pct(o.success_rate)),
            ("cache hits", f"{c.hits} ({_pct(c.hit_rate)} of successes)"),
        ],
        align="ll",
    )
    if report.skipped_records:
        lines.append(f"  ({report.skipped_records} undecodable records skipped)")
    lines += ["", "PERFORMANCE (processing time of successful results)"]
    lines += _table(
        [
            ("results", str(p.count)),
            ("total", _fmt(p.total_s, " s", 3)),
            ("mean", _fmt(p.mean_s, " s")),
            ("median", _fmt(p.median_s, " s")),
            ("p95", _fmt(p.p95_s, " s")),
            ("p99", _fmt(p.p99_s, " s")),
            ("min", _fmt(p.min_s, " s")),
            ("max", _fmt(p.max_s, " s")),
            ("wall time", _fmt(p.wall_seconds, " s", 3)),
            ("throughput", _fmt(p.throughput_per_s, " results/s", 1)),
        ],
        align="ll",
    )
    lines += ["", "HRV BY PROFILE (means)"]
    if report.hrv:
        header = ("profile", "results", "with hrv", "overall", *DIMENSION_NAMES)
        rows = [
            (
                s.profile,
                str(s.count),
                str(s.with_hrv),
                _fmt(s.mean_overall, digits=3),
                *(_fmt(s.dimensions.get(name), digits=3) for name in DIMENSION_NAMES),
            )
            for s in report.hrv
        ]
        lines += _table([header, *rows])
    else:
        lines.append("  (no successful results)")
    lines += ["", "ERRORS"]
    if report.errors.by_type:
        lines += _table([("type", "count"), *((t, str(n)) for t, n in report.errors.by_type.items())])
        lines += ["", "  most common messages:"]
        lines += _table([(str(m.count), m.message) for m in report.errors.top_messages], "rl", indent="    ")
    else:
        lines.append("  (none)")
    if report.backpressure_seconds is not None:
        lines += ["", f"BACK-PRESSURE  {report.backpressure_seconds:.1f} s paused"]
    lines += ["", "RECOMMENDATIONS"]
    lines += [f"  - {r}" for r in report.recommendations] or ["  (none: nothing stands out)"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- command


DESCRIPTION = """\
Summarise what the service wrote: success rate, processing-time percentiles, throughput, HRV per
profile, errors by type with the most common messages, cache hits, and recommendations when a
figure stands out. Reads the results and errors topics up to the end offsets captured at start
(or between --since and --until), or a JSONL file of outputs. Exits 2 when the input cannot be
read.

Example:
  stream-service report -b broker-1:9092 --since 15m
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="summarise results and errors: success rate, latency, HRV, errors, recommendations",
        description=DESCRIPTION,
    )
    add_connection_arguments(parser)
    parser.add_argument(
        "--results-topic", metavar="TOPIC", help="the results topic (default: topics.results)"
    )
    parser.add_argument("--errors-topic", metavar="TOPIC", help="the errors topic (default: topics.errors)")
    parser.add_argument(
        "--since", metavar="TIME", help="first output time: ISO 8601 or a duration ago (15m, 2h)"
    )
    parser.add_argument("--until", metavar="TIME", help="last output time: ISO 8601 or a duration ago")
    parser.add_argument(
        "--file", type=Path, metavar="PATH", help="read a JSONL file of results/errors instead of Kafka"
    )
    parser.add_argument(
        "--wall-seconds", type=float, metavar="S", help="wall time for the throughput (with --file)"
    )
    parser.add_argument(
        "--backpressure-seconds",
        type=float,
        metavar="S",
        help="seconds the service spent paused (from its metrics)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``stream-service report``: 0 on success, 2 when the input cannot be read."""
    try:
        if args.file is not None:
            outputs = load_jsonl(args.file)
        else:
            config = tool_config(args, {"results_topic": "topics.results", "errors_topic": "topics.errors"})
            since = parse_time(args.since) if args.since else None
            until = parse_time(args.until) if args.until else None
            outputs = asyncio.run(
                read_outputs(
                    tools_options(config),
                    config.topics.results,
                    config.topics.errors,
                    since_ms=since,
                    until_ms=until,
                )
            )
    except (ToolError, ConfigError, KafkaError, OSError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    for topic in outputs.incomplete:
        print(f"report: warning: stopped reading {topic} before its end (no progress)", file=sys.stderr)
    wall = args.wall_seconds if args.wall_seconds is not None else outputs.wall_seconds
    report = analyse(outputs.records, backpressure_seconds=args.backpressure_seconds, wall_seconds=wall)
    report = msgspec.structs.replace(report, skipped_records=outputs.skipped)
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n")
    else:
        sys.stdout.write(render_text(report))
    return 0
