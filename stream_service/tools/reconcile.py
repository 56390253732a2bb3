"""``stream-service reconcile``: prove every input offset has at least one output.

Reads the lineage headers (``source-topic``/``source-partition``/``source-offset``) of the
results and errors topics and checks them against the input topic's offsets, per partition,
over ``[from, to)`` (default: earliest to the end offsets captured at start). Offsets may have
gaps (transaction markers, compaction), so by default the input topic itself is read to learn
which offsets exist; ``--assume-contiguous`` skips that read.

Exit status: 0 when nothing is missing; 1 when some input has no output; 2 on errors.
Duplicates (an input answered more than once) are reported but allowed: delivery is
at-least-once. Run it once the service has caught up, or bound it with ``--to-offset``:
inputs still being processed show up as missing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from stream_service.clients import for_client, tools_options
from stream_service.errors import ConfigError, ToolError
from stream_service.exit_codes import ExitCode
from stream_service.tools.connection import add_connection_arguments, tool_config
from stream_service.tools.lineage import parse_lineage
from stream_service.tools.progress import WorkMeter, tool_progress
from stream_service.tools.reconcile_tally import (
    MAX_RANGES_LISTED,
    PartitionVerdict,
    Tally,
    Verdict,
    reconcile,
)
from stream_service.tools.scan import Isolation, partition_bounds, scan_topic

__all__ = [
    "MAX_RANGES_LISTED",
    "PartitionVerdict",
    "Tally",
    "Verdict",
    "reconcile",
    "reconcile_topics",
    "register",
    "render_text",
]

# ------------------------------------------------------------------------------------------- reading


async def input_ranges(
    options: Mapping[str, Any],
    topic: str,
    partitions: Collection[int] | None,
    from_offset: int | None,
    to_offset: int | None,
) -> dict[int, tuple[int, int]]:
    """partition -> [start, end) of ``topic``, clamped to what the topic holds right now."""
    consumer = AIOKafkaConsumer(**for_client("consumer", options, group_id=None, enable_auto_commit=False))
    await consumer.start()
    try:
        tps, beginning, end = await partition_bounds(options, consumer, topic)
    finally:
        await consumer.stop()
    known = {tp.partition for tp in tps}
    if partitions is not None and (unknown := set(partitions) - known):
        raise ToolError(f"topic {topic!r} has no partition {sorted(unknown)}")
    ranges = {}
    for tp in tps:
        if partitions is None or tp.partition in partitions:
            start = max(beginning[tp], from_offset if from_offset is not None else 0)
            stop = end[tp] if to_offset is None else min(end[tp], to_offset)
            ranges[tp.partition] = (start, max(start, stop))
    return ranges


async def reconcile_topics(
    options: Mapping[str, Any],
    input_topic: str,
    output_topics: Iterable[str],
    *,
    partitions: Collection[int] | None = None,
    from_offset: int | None = None,
    to_offset: int | None = None,
    assume_contiguous: bool = False,
    isolation: Isolation = "read_uncommitted",
    exactly_once: bool = False,
    meter: WorkMeter | None = None,
) -> Verdict:
    """Read the input's offsets and the outputs' lineage from Kafka and reconcile them.

    Input ranges are captured first, then the output end offsets: outputs written for inputs in
    range before the scan starts are all seen. With ``exactly_once`` the outputs are read
    ``read_committed`` and a duplicate output makes the verdict fail too.
    """
    if exactly_once:
        isolation = "read_committed"
    ranges = await input_ranges(options, input_topic, partitions, from_offset, to_offset)
    tally = Tally(input_topic, ranges, contiguous=assume_contiguous)

    def on_output(record: Any) -> None:
        lineage = parse_lineage(record.headers)
        if lineage is None:
            tally.unlabelled += 1
        else:
            tally.seen(lineage.topic, lineage.partition, lineage.offset)

    scans = [
        scan_topic(options, topic, on_output, isolation=isolation, meter=meter) for topic in output_topics
    ]
    if not assume_contiguous and any(start < stop for start, stop in ranges.values()):
        # Keys and values are fetched but never decoded: only the offsets matter.
        scans.append(
            scan_topic(
                options,
                input_topic,
                lambda record: tally.expect(record.partition, record.offset),
                ranges=ranges,
                meter=meter,
            )
        )
    for stats in await asyncio.gather(*scans):
        if not stats.complete:
            raise ToolError(
                f"could not read {stats.topic} to its end (no progress): the verdict would be wrong"
            )
    verdict = tally.verdict()
    if exactly_once:
        ok = verdict.ok and verdict.duplicate_outputs == 0
        verdict = msgspec.structs.replace(verdict, exactly_once=True, ok=ok)
    return verdict


# ------------------------------------------------------------------------------------------ rendering


def render_text(verdict: Verdict) -> str:
    """The verdict as a table per partition, the missing ranges, notes and a one-line status."""
    mode = "assumed contiguous" if verdict.contiguous else "read from the topic"
    rows: list[tuple[str, ...]] = [("partition", "range", "expected", "answered", "missing", "duplicated")]
    for p in verdict.partitions:
        span = f"{p.start}..{p.end - 1}" if p.end > p.start else "(empty)"
        counts = (p.expected, p.answered, p.missing, p.duplicated_offsets)
        rows.append((str(p.partition), span, *(str(n) for n in counts)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"input topic {verdict.input_topic} (offsets {mode})", ""]
    for row in rows:
        left = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        right = [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(left + right))
    lines.append("")
    for p in verdict.partitions:
        if p.missing_ranges:
            shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in p.missing_ranges)
            more = " ..." if p.missing_ranges_truncated else ""
            lines.append(f"missing in partition {p.partition}: {shown}{more}")
    unknown = sum(p.unknown_offsets for p in verdict.partitions)
    notes = [
        (verdict.duplicate_outputs, "duplicate outputs (redelivery; allowed at-least-once)"),
        (verdict.outside_range, "outputs outside the checked range"),
        (verdict.other_topics, "outputs answering other input topics"),
        (verdict.unlabelled, "outputs without lineage headers"),
        (unknown, "outputs naming offsets the input topic does not hold"),
    ]
    lines += [f"note: {count} {what}" for count, what in notes if count]
    status = "OK" if verdict.ok else "MISSING" if verdict.missing else "DUPLICATES"
    summary = f"{status}: {verdict.answered}/{verdict.expected} inputs answered, {verdict.missing} missing"
    if verdict.exactly_once:
        summary += f", {verdict.duplicate_outputs} duplicates in committed data"
    lines.append(summary)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- command


def _partition_list(text: str) -> list[int]:
    try:
        return sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated partition numbers, got {text!r}"
        ) from None


DESCRIPTION = """\
Prove that every input offset has at least one output. Reads the lineage headers (source-topic,
source-partition, source-offset) of the results and errors topics and checks them against the
input topic's offsets, per partition, from the earliest offset to the end offsets captured at
start (or --from-offset/--to-offset). Offsets may have gaps (transaction markers, compaction), so
the input topic itself is read to learn which offsets exist, unless --assume-contiguous.
Duplicates are reported but allowed (delivery is at least once) except with --exactly-once. Run
it once the service has caught up: inputs still being processed count as missing. Exits 0 when
nothing is missing, 1 when some input has no output, 2 on errors.

Example:
  stream-service reconcile -b broker-1:9092 -t requests
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``reconcile`` subcommand."""
    parser = subparsers.add_parser(
        "reconcile",
        help="prove every input offset has an output (exit 1 when some are missing)",
        description=DESCRIPTION,
    )
    add_connection_arguments(parser)
    parser.add_argument(
        "-t", "--input-topic", metavar="TOPIC", help="the requests topic (default: topics.input)"
    )
    parser.add_argument(
        "--results-topic", metavar="TOPIC", help="the results topic (default: topics.results)"
    )
    parser.add_argument("--errors-topic", metavar="TOPIC", help="the errors topic (default: topics.errors)")
    parser.add_argument(
        "--partitions", type=_partition_list, metavar="N,N,...", help="input partitions to check, e.g. 0,3,4"
    )
    parser.add_argument(
        "--from-offset", type=int, metavar="OFFSET", help="first input offset checked (every partition)"
    )
    parser.add_argument(
        "--to-offset",
        type=int,
        metavar="OFFSET",
        help="end of the checked range, exclusive (every partition)",
    )
    parser.add_argument(
        "--assume-contiguous",
        action="store_true",
        help="do not read the input topic: treat every offset in range as an input (faster; wrong "
        "for transactional or compacted input topics)",
    )
    parser.add_argument(
        "--isolation",
        choices=["read_uncommitted", "read_committed"],
        default="read_uncommitted",
        help="read every output, or only those of committed transactions",
    )
    parser.add_argument(
        "--exactly-once",
        action="store_true",
        help="check committed data (read_committed) and fail on duplicate outputs too",
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``stream-service reconcile``: 0 all answered, 1 some missing (or, with
    ``--exactly-once``, duplicated), 2 errors."""
    meter = WorkMeter(tool_progress(sys.stderr, json_output=args.json), "read")
    try:
        config = tool_config(
            args,
            {
                "input_topic": "topics.input",
                "results_topic": "topics.results",
                "errors_topic": "topics.errors",
            },
        )
        verdict = asyncio.run(
            reconcile_topics(
                tools_options(config),
                config.topics.input,
                [config.topics.results, config.topics.errors],
                partitions=args.partitions,
                from_offset=args.from_offset,
                to_offset=args.to_offset,
                assume_contiguous=args.assume_contiguous,
                isolation=args.isolation,
                exactly_once=args.exactly_once,
                meter=meter,
            )
        )
    except (ToolError, ConfigError, KafkaError, OSError) as exc:
        meter.finish()
        print(f"reconcile: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    meter.finish()
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(verdict), indent=2).decode() + "\n")
    else:
        sys.stdout.write(render_text(verdict))
    return 0 if verdict.ok else ExitCode.FAILED
