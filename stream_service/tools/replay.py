"""``stream-service replay``: re-produce the input records of failed requests, unchanged.

Reads the errors topic (``--since``/``--until``, ``read_committed``), keeps the error records of
the wanted types (``--error-type``; by default the retriable ones: timeout, rate_limit,
connection, crash), follows their lineage headers back to the input records, and produces each
of those again to the same partition of the input topic: the same key, value and headers, plus
``replay-of`` (the request's original record, ``<topic>/<partition>/<offset>``) and
``replay-count`` (1 on the first replay; a replay of a replay counts on). The service answers a
replay like any other request.

Skipped, and reported: several error records for one input (``duplicate``: replayed once), a
request that already has a later replay (``already-replayed``: running the command again is
safe), a request replayed ``--max-replays`` times (``max-replays``), an input deleted by
retention (``expired``) or otherwise gone (``not-found``), errors of another input topic
(``other-topic``). To see those replays the input topic is read from the first failed offset
of each partition to its end.

Exit status: 0 when every failed request found was replayed (or already had been); 1 when some
cannot be (max-replays, expired, not-found) or Kafka did not acknowledge a replay (with
``--dry-run``: when some could not be); 2 on usage and connection errors; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import IO, Any, get_args

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_service.clients import close_producer, tools_options
from stream_service.errors import ConfigError, ErrorType, ToolError
from stream_service.exit_codes import ExitCode
from stream_service.tools.connection import add_connection_arguments, tool_config
from stream_service.tools.lineage import Lineage, content_type, parse_lineage
from stream_service.tools.pacing import Pace
from stream_service.tools.replay_plan import (
    DEFAULT_ERROR_TYPES,
    REFUSED_ERROR_TYPES,
    Failures,
    InputIndex,
    Replay,
    plan_replays,
)
from stream_service.tools.replay_summary import (
    ProduceFailure,
    ReplayProgress,
    ReplaySummary,
    render_text,
    summarise,
)
from stream_service.tools.scan import parse_time, partition_bounds, scan_topic
from stream_service.wire import CONTENT_TYPE_ENCODINGS

__all__ = ["read_failures", "read_inputs", "register", "replay_failed", "send_replays"]

DEFAULT_MAX_REPLAYS = 3
MAX_IN_FLIGHT = 1_000  # replays handed to the producer and not yet acknowledged


class _ErrorHead(msgspec.Struct, kw_only=True):
    """The two fields of an ErrorRecord the replay needs (decoding only these is cheaper)."""

    id: str | None = None
    error_type: str


async def read_failures(
    options: Mapping[str, Any],
    errors_topic: str,
    input_topic: str,
    error_types: Sequence[str],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Failures:
    """The failed inputs of ``input_topic`` that error records of ``error_types`` name."""
    failures = Failures(input_topic, error_types)
    decoders: dict[str, msgspec.json.Decoder[_ErrorHead] | msgspec.msgpack.Decoder[_ErrorHead]] = {
        "json": msgspec.json.Decoder(_ErrorHead),
        "msgpack": msgspec.msgpack.Decoder(_ErrorHead),
    }

    def on_error(record: Any) -> None:
        lineage: Lineage | None
        try:
            lineage = parse_lineage(record.headers)
            kind = lineage.content_type if lineage is not None else content_type(record.headers)
        except (AttributeError, TypeError):  # a lineage header without a value
            lineage, kind = None, ""
        encoding = CONTENT_TYPE_ENCODINGS.get(kind.split(";")[0].strip().lower())
        head = None
        if encoding is not None and record.value is not None:
            try:
                head = decoders[encoding].decode(record.value)
            except msgspec.MsgspecError:
                pass
        request_id = lineage.request_id if lineage is not None and lineage.request_id else None
        failures.add(
            head.error_type if head is not None else None,
            lineage,
            request_id or (head.id if head is not None else None),
        )

    stats = await scan_topic(
        options, errors_topic, on_error, since_ms=since_ms, until_ms=until_ms, isolation="read_committed"
    )
    if not stats.complete:
        raise ToolError(f"could not read {errors_topic} to its end (no progress)")
    return failures


async def read_inputs(
    options: Mapping[str, Any], input_topic: str, wanted: dict[int, set[int]]
) -> InputIndex:
    """The wanted input records, and the replays of every request, read from the first wanted
    offset of each partition to the end offset captured now (``read_committed``)."""
    consumer = AIOKafkaConsumer(
        **options, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps, beginning, end = await partition_bounds(options, consumer, input_topic)
    finally:
        await consumer.stop()
    index = InputIndex(wanted, {tp.partition: beginning[tp] for tp in tps})
    ranges: dict[int, tuple[int, int]] = {}
    for tp in tps:
        if offsets := wanted.get(tp.partition):
            start = max(beginning[tp], min(offsets))
            if start < end[tp]:
                ranges[tp.partition] = (start, end[tp])
    if not ranges:
        return index
    stats = await scan_topic(
        options,
        input_topic,
        lambda r: index.add(r.partition, r.offset, r.key, r.value, r.headers),
        ranges=ranges,
        isolation="read_committed",
    )
    if not stats.complete:
        raise ToolError(f"could not read {input_topic} to its end (no progress)")
    return index


async def send_replays(
    producer: Any,
    topic: str,
    replays: Sequence[Replay],
    *,
    rate: float = 0.0,
    progress: Callable[[int, int], None] = lambda done, failed: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[int, list[ProduceFailure]]:
    """Produce ``replays`` in order, each to its partition; (acknowledged, not acknowledged).

    With ``rate`` (records per second) they go out on a schedule from the start. At most
    :data:`MAX_IN_FLIGHT` are unacknowledged at a time; all are awaited before this returns.
    ``progress(acknowledged, failed)`` is called as they go.
    """
    pace = Pace(rate_per_s=rate) if rate > 0 else None
    in_flight: deque[tuple[Replay, asyncio.Future[Any]]] = deque()
    failures: list[ProduceFailure] = []
    acked = 0

    def failed(replay: Replay, exc: BaseException) -> None:
        failures.append(
            ProduceFailure(partition=replay.partition, offset=replay.offset, request_id=replay.request_id,
                           error=f"{type(exc).__name__}: {exc}")
        )  # fmt: skip

    async def collect(limit: int) -> None:
        nonlocal acked
        while in_flight and (len(in_flight) > limit or in_flight[0][1].done()):
            replay, ack = in_flight.popleft()
            try:
                await ack
            except KafkaError as exc:
                failed(replay, exc)
            else:
                acked += 1

    started = clock()
    for sent, replay in enumerate(replays):
        while pace is not None and pace.due(clock() - started, sent) == 0:
            await collect(MAX_IN_FLIGHT)
            progress(acked, len(failures))
            await sleep(pace.wait_s(clock() - started, sent))
        try:
            ack = await producer.send(
                topic, replay.value, key=replay.key, headers=replay.headers, partition=replay.partition
            )
        except (KafkaError, ValueError) as exc:  # ValueError: a header name that cannot be encoded
            failed(replay, exc)
        else:
            in_flight.append((replay, ack))
        await collect(MAX_IN_FLIGHT)
        progress(acked, len(failures))
    await collect(0)
    return acked, failures


async def replay_failed(
    options: Mapping[str, Any],
    *,
    input_topic: str,
    errors_topic: str,
    error_types: Sequence[str] = DEFAULT_ERROR_TYPES,
    since_ms: int | None = None,
    until_ms: int | None = None,
    max_replays: int = DEFAULT_MAX_REPLAYS,
    dry_run: bool = False,
    rate: float = 0.0,
    producer_settings: Mapping[str, Any] | None = None,
    err: IO[str] = sys.stderr,
    make_producer: Callable[..., Any] = AIOKafkaProducer,
    clock: Callable[[], float] = time.monotonic,
) -> ReplaySummary:
    """Plan the replays of the failed requests and, unless ``dry_run``, produce them with an
    idempotent ``acks=all`` producer (``make_producer(**options, **settings)``), a progress line
    on ``err``. Raises ToolError when a topic is missing or cannot be read to its end, and
    KafkaError when Kafka cannot be reached."""
    failures = await read_failures(
        options, errors_topic, input_topic, error_types, since_ms=since_ms, until_ms=until_ms
    )
    tty = err.isatty()  # a pipe or a log gets the summary only

    def note(text: str) -> None:
        if tty:
            err.write(text)

    note(f"read {failures.read:,} error records of {errors_topic}: {len(failures.inputs):,} failed inputs\n")
    found = InputIndex({}, {})
    if failures.inputs:
        found = await read_inputs(options, input_topic, failures.offsets())
        note(f"read {found.scanned:,} records of {input_topic} to find them and their replays\n")
    plan = plan_replays(failures, found, max_replays=max_replays)
    if dry_run or not plan.replays:
        return summarise(
            failures, found, plan, errors_topic=errors_topic, dry_run=dry_run, max_replays=max_replays
        )
    settings = {"acks": "all", "enable_idempotence": True, **(producer_settings or {})}
    producer = make_producer(**options, **settings)
    progress = ReplayProgress(err, len(plan.replays), clock=clock)
    try:
        await producer.start()
        started = clock()
        replayed, produce_failures = await send_replays(
            producer, input_topic, plan.replays, rate=rate, progress=progress.update, clock=clock
        )
        elapsed_s = clock() - started
    finally:
        await close_producer(producer)
    progress.finish(replayed, len(produce_failures))
    return summarise(
        failures,
        found,
        plan,
        errors_topic=errors_topic,
        dry_run=False,
        max_replays=max_replays,
        replayed=replayed,
        produce_failures=produce_failures,
        elapsed_s=elapsed_s,
    )


# ------------------------------------------------------------------------------------------- command

_ERROR_TYPES: tuple[str, ...] = get_args(ErrorType)


def _error_types(text: str) -> list[str]:
    types = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in _ERROR_TYPES]
    if unknown or not types:
        named = ", ".join(unknown) if unknown else repr(text)
        raise argparse.ArgumentTypeError(f"unknown error type {named}; known: {', '.join(_ERROR_TYPES)}")
    return types


DESCRIPTION = """\
Re-produce the input records of failed requests, unchanged. Reads the errors topic (--since,
--until; read_committed), keeps the error records of the wanted types (--error-type; by default
the retriable ones: timeout, rate_limit, connection, crash), follows their lineage headers back to
the input records and produces each again to the same partition of the input topic: the same key,
value and headers, plus replay-of (the original record, <topic>/<partition>/<offset>) and
replay-count (1 on the first replay; a replay of a replay counts on). The service answers a replay
like any other request.

A request is replayed once however many error records name it, never more than --max-replays
times in all, and not again when it already has a later replay, so running the command twice is
safe. Inputs deleted by retention are reported as expired. Exits 0 when every failed request found
was replayed (or already had been), 1 when some cannot be or Kafka did not acknowledge a replay, 2
on usage and connection errors, 130 when interrupted.

Example:
  stream-service replay -b broker-1:9092 -t requests --since 2h --dry-run
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        "replay",
        help="re-produce the input records of failed requests (timeouts, rate limits, ...)",
        description=DESCRIPTION,
    )
    add_connection_arguments(parser)
    parser.add_argument(
        "-t",
        "--input-topic",
        metavar="TOPIC",
        help="the requests topic the failed requests were read from and are replayed to "
        "(default: topics.input)",
    )
    parser.add_argument("--errors-topic", metavar="TOPIC", help="the errors topic (default: topics.errors)")
    refused = "; ".join(f"{t}: {why}" for t, why in REFUSED_ERROR_TYPES.items())
    parser.add_argument(
        "--error-type",
        dest="error_types",
        type=_error_types,
        default=list(DEFAULT_ERROR_TYPES),
        metavar="TYPE[,TYPE...]",
        help=f"error types to replay (default: {','.join(DEFAULT_ERROR_TYPES)}; memory and unknown "
        f"when named). Refused without --force, because the same record fails the same way: {refused}",
    )
    parser.add_argument("--force", action="store_true", help="replay refused error types too")
    parser.add_argument("--since", help="first error time: ISO 8601 or a duration ago (15m, 2h)")
    parser.add_argument("--until", help="last error time: ISO 8601 or a duration ago")
    parser.add_argument(
        "--max-replays",
        type=int,
        default=DEFAULT_MAX_REPLAYS,
        help="replay a request at most this many times in all (default: %(default)s)",
    )
    parser.add_argument("--rate", type=float, default=0.0, help="replays per second; 0 = as fast as possible")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; produce nothing")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``stream-service replay``: 0 all replayed, 1 some cannot be, 2 errors, 130 interrupted."""
    refused = [t for t in args.error_types if t in REFUSED_ERROR_TYPES]
    if refused and not args.force:
        reasons = "; ".join(f"{t}: {REFUSED_ERROR_TYPES[t]}" for t in refused)
        print(f"replay: not replaying {', '.join(refused)} without --force ({reasons})", file=sys.stderr)
        return ExitCode.USAGE
    if args.max_replays < 1 or args.rate < 0:
        print("replay: --max-replays must be at least 1 and --rate at least 0", file=sys.stderr)
        return ExitCode.USAGE
    try:
        config = tool_config(args, {"input_topic": "topics.input", "errors_topic": "topics.errors"})
        summary = asyncio.run(
            replay_failed(
                tools_options(config),
                input_topic=config.topics.input,
                errors_topic=config.topics.errors,
                error_types=args.error_types,
                since_ms=parse_time(args.since) if args.since else None,
                until_ms=parse_time(args.until) if args.until else None,
                max_replays=args.max_replays,
                dry_run=args.dry_run,
                rate=args.rate,
                producer_settings={
                    "linger_ms": config.kafka.producer_linger_ms,
                    "max_request_size": config.kafka.producer_max_request_size,
                },
            )
        )
    except KeyboardInterrupt:
        print(
            "\nreplay: interrupted; the replays Kafka acknowledged stand, and the same command "
            "replays only the rest",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED
    except (ToolError, ConfigError, KafkaError, OSError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(summary), indent=2).decode() + "\n")
    else:
        sys.stdout.write(render_text(summary))
    return ExitCode.OK if summary.ok else ExitCode.FAILED
