"""``stream-service report``: what the service produced, in figures, with recommendations.

Reads results and errors from their topics (bounded by ``--since``/``--until`` or by the end
offsets captured at start) or from a JSONL file, one output at a time, and prints a
:class:`~stream_service.tools.report_model.Report` as text or JSON. The figures are computed as
the outputs stream by (:mod:`stream_service.tools.report_stats`), so memory does not grow with
the topic; the text is :mod:`stream_service.tools.report_render`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import msgspec
from aiokafka.errors import KafkaError

from stream_service.clients import tools_options
from stream_service.errors import ConfigError, ToolError
from stream_service.exit_codes import ExitCode
from stream_service.tools.connection import add_connection_arguments, tool_config
from stream_service.tools.latency import percentile
from stream_service.tools.latency_plot import write_plot
from stream_service.tools.outputs import load_jsonl, read_outputs
from stream_service.tools.progress import WorkMeter, tool_progress
from stream_service.tools.report_model import Report, Thresholds
from stream_service.tools.report_render import render_text
from stream_service.tools.report_stats import ReportBuilder, analyse
from stream_service.tools.scan import parse_time

__all__ = ["Report", "ReportBuilder", "Thresholds", "analyse", "percentile", "register", "render_text"]

DESCRIPTION = """\
Summarise what the service wrote: success rate, processing-time percentiles, throughput, HRV per
profile, errors by type with the most common messages, cache hits, and recommendations when a
figure stands out. Reads the results and errors topics up to the end offsets captured at start
(or between --since and --until), or a JSONL file of outputs, one output at a time (memory does
not grow with the topic). --plot also draws the processing-time histogram as a PNG. Exits 2
when the input cannot be read.

Example:
  stream-service report -b broker-1:9092 --since 15m --plot latency.png
"""


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
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="also write the processing-time histogram as a PNG picture, e.g. latency.png",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``stream-service report``: 0 on success, 2 when the input cannot be read."""
    builder = ReportBuilder()
    meter = WorkMeter(tool_progress(sys.stderr, json_output=args.json), "read")
    try:
        if args.file is not None:
            outputs = load_jsonl(args.file, builder.add)
        else:
            config = tool_config(args, {"results_topic": "topics.results", "errors_topic": "topics.errors"})
            since = parse_time(args.since) if args.since else None
            until = parse_time(args.until) if args.until else None
            outputs = asyncio.run(
                read_outputs(
                    tools_options(config),
                    config.topics.results,
                    config.topics.errors,
                    builder.add,
                    since_ms=since,
                    until_ms=until,
                    meter=meter,
                )
            )
    except (ToolError, ConfigError, KafkaError, OSError) as exc:
        meter.finish()
        print(f"report: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    meter.finish()
    for topic in outputs.incomplete:
        print(f"report: warning: stopped reading {topic} before its end (no progress)", file=sys.stderr)
    wall = args.wall_seconds if args.wall_seconds is not None else outputs.wall_seconds
    report = builder.report(backpressure_seconds=args.backpressure_seconds, wall_seconds=wall)
    report = msgspec.structs.replace(report, skipped_records=outputs.skipped)
    if args.plot is not None:
        try:
            write_plot(builder.latency, args.plot)
        except OSError as exc:
            print(f"report: cannot write the plot: {exc}", file=sys.stderr)
            return ExitCode.USAGE
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n")
    else:
        sys.stdout.write(render_text(report))
    return 0
