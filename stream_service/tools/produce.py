"""``stream-service produce``: a deterministic load generator for the input topic.

Generates requests (a seed fixes every id, prompt, tenant and choice), optionally mixed with
re-sent prompts under new ids (to exercise the result cache) and with bad records of five kinds
(invalid JSON, wrong schema, oversized prompt, unknown profile, non-UTF-8 bytes).
:func:`produce_requests` is the reusable core: the demo, tests and benchmarks call it.

Speed: records are appended straight into per-partition batches and acknowledgements are
awaited in bulk (:mod:`stream_service.tools.batch_sender`), about three times faster than one
``send()`` per record. Keyed records are placed by CRC-32 of the key, so one key always lands
on one partition (though not on the partition Java's murmur2 partitioner would pick).

With ``--rate`` records go out on a schedule from the start of the run
(:mod:`stream_service.tools.pacing`) while acknowledgements arrive in the background, so the
offered rate is met as long as the broker keeps up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_service.clients import for_client, tools_options
from stream_service.errors import ConfigError
from stream_service.exit_codes import ExitCode
from stream_service.tools.batch_sender import BatchProducer, BatchSender
from stream_service.tools.connection import add_connection_arguments, tool_config
from stream_service.tools.pacing import Pace
from stream_service.tools.progress import WorkMeter, tool_progress
from stream_service.tools.request_generator import (
    BAD_KINDS,
    DEFAULT_PROFILES,
    Generated,
    KeyMode,
    RequestGenerator,
)
from stream_service.wire import Encoding

__all__ = [
    "BAD_KINDS",
    "DEFAULT_PROFILES",
    "Generated",
    "ProduceStats",
    "RequestGenerator",
    "produce_requests",
    "register",
]


_CHUNK_RECORDS = 5_000  # at most this many records generated between hand-offs to the producer
_BATCH_BYTES = 512 * 1024


class ProduceStats(msgspec.Struct, kw_only=True):
    """What a run sent: totals by kind, tenant and partition, and the achieved rate."""

    topic: str
    sent: int = 0
    valid: int = 0
    duplicates: int = 0
    bad: dict[str, int] = {}
    tenants: dict[str, int] = {}
    partitions: dict[int, int] = {}
    elapsed_s: float = 0.0
    rate_per_s: float = 0.0


async def produce_requests(
    bootstrap: str | Mapping[str, Any],
    topic: str,
    count: int,
    *,
    rate: float = 0.0,
    tenants: Sequence[str] = ("tenant-0",),
    tenant_weights: Sequence[float] | None = None,
    profiles: Sequence[str] = DEFAULT_PROFILES,
    priorities: Sequence[int] = (0,),
    duplicate_ratio: float = 0.0,
    bad_ratio: float = 0.0,
    prompt_bytes: int = 200,
    seed: int = 0,
    key: KeyMode = "id",
    encoding: Encoding = "json",
    id_prefix: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    make_producer: Callable[..., BatchProducer] = AIOKafkaProducer,
    meter: WorkMeter | None = None,
) -> ProduceStats:
    """Send ``count`` generated requests to ``topic`` and wait until Kafka acknowledged all.

    ``bootstrap`` is a bootstrap-servers string or a dict of aiokafka client options.
    ``rate`` is records per second (0: as fast as possible), kept from the start of the run
    without waiting for acknowledgements in between. Ids are ``{id_prefix}{n:09d}`` (default
    prefix ``s{seed}-``). The producer (``make_producer(**options)``) is stopped however this
    ends, cancellation during its start included. A ``meter`` counts the records handed to the
    producer. Raises KafkaError when records cannot be delivered, ValueError for an infinite
    ``rate``.
    """
    generator = RequestGenerator(
        tenants=tenants,
        tenant_weights=tenant_weights,
        profiles=profiles,
        priorities=priorities,
        duplicate_ratio=duplicate_ratio,
        bad_ratio=bad_ratio,
        prompt_bytes=prompt_bytes,
        seed=seed,
        key=key,
        encoding=encoding,
        id_prefix=id_prefix,
    )
    options = {"bootstrap_servers": bootstrap} if isinstance(bootstrap, str) else dict(bootstrap)
    pace = Pace(rate_per_s=rate) if rate > 0 else None
    producer = make_producer(
        **for_client("producer", options, acks="all", linger_ms=10, max_batch_size=_BATCH_BYTES)
    )
    kinds: Counter[str] = Counter()
    tenant_counts: Counter[str] = Counter()
    try:
        # Inside the try: a start cancelled or failed half way has opened connections too.
        await producer.start()
        partitions = sorted(await producer.partitions_for(topic))
        sender = BatchSender(producer, topic, partitions, generator.headers)
        started = clock()
        records = iter(generator)
        sent = 0
        if meter is not None:
            meter.expect(count)
        while sent < count:
            chunk = min(_CHUNK_RECORDS, count - sent)
            if pace is not None:
                elapsed_s = clock() - started
                chunk = min(chunk, pace.due(elapsed_s, sent))
                if chunk == 0:
                    await sleep(pace.wait_s(elapsed_s, sent))
                    continue
            for _ in range(chunk):
                record = next(records)
                sender.append(record.key, record.value)
                kinds[record.kind] += 1
                tenant_counts[record.tenant] += 1
            sent += chunk
            if pace is not None:
                await sender.send_open()  # paced records go out now, not when a batch fills
            else:
                await sender.send_full()
            if meter is not None:
                meter.advance(chunk)
        await sender.flush()
        elapsed_s = clock() - started
    finally:
        await producer.stop()
    return ProduceStats(
        topic=topic,
        sent=sent,
        valid=kinds.pop("valid", 0),
        duplicates=kinds.pop("duplicate", 0),
        bad=dict(sorted(kinds.items())),
        tenants=dict(sorted(tenant_counts.items())),
        partitions=dict(sorted(sender.per_partition.items())),
        elapsed_s=elapsed_s,
        rate_per_s=sent / elapsed_s if elapsed_s > 0 else 0.0,
    )


# ------------------------------------------------------------------------------------------- command


def _tenant_list(text: str) -> list[str]:
    text = text.strip()
    if text.isdigit():
        return [f"tenant-{i}" for i in range(int(text))]
    return [t.strip() for t in text.split(",") if t.strip()]


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        try:
            return [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid list {text!r}") from None

    return parse


DESCRIPTION = """\
Send generated requests to the input topic: a deterministic load generator (the same --seed and
arguments always give the same ids, prompts, tenants and choices). It can mix in re-sent prompts
under new ids, which the result cache answers, and bad records of five kinds (invalid JSON, wrong
schema, oversized prompt, unknown profile, non-UTF-8 bytes). Keyed records are placed by CRC-32
of the key. With --rate records go out on a schedule from the start of the run. Exits 0 once
Kafka has acknowledged every record, 2 when it cannot.

Example:
  stream-service produce -b broker-1:9092 -t requests -c 10000 --rate 500 --tenants 3
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``produce`` subcommand."""
    parser = subparsers.add_parser(
        "produce", help="send generated requests to the input topic (load generator)", description=DESCRIPTION
    )
    add_connection_arguments(parser)
    parser.add_argument("-t", "--topic", metavar="TOPIC", help="topic written to (default: topics.input)")
    parser.add_argument("-c", "--count", type=int, default=1000, metavar="N", help="records to send")
    parser.add_argument(
        "--rate", type=float, default=0.0, metavar="PER_S", help="records per second; 0 = as fast as possible"
    )
    parser.add_argument(
        "--tenants",
        type=_tenant_list,
        default=["tenant-0"],
        metavar="A,B,...|N",
        help="tenant names, or a count N",
    )
    parser.add_argument(
        "--tenant-weights", type=_csv(float), metavar="W,W,...", help="relative weights, one per tenant"
    )
    parser.add_argument(
        "--profiles",
        type=_csv(str),
        default=list(DEFAULT_PROFILES),
        metavar="P,P,...",
        help="profiles to pick from",
    )
    parser.add_argument(
        "--priorities", type=_csv(int), default=[0], metavar="N,N,...", help="priorities to pick from"
    )
    parser.add_argument(
        "--duplicate-ratio", type=float, default=0.0, metavar="R", help="share re-sending a recent prompt"
    )
    parser.add_argument(
        "--bad-ratio", type=float, default=0.0, metavar="R", help="share of bad records (five kinds)"
    )
    parser.add_argument("--prompt-bytes", type=int, default=200, metavar="N", help="approximate prompt size")
    parser.add_argument("--seed", type=int, default=0, help="fixes every generated value")
    parser.add_argument("--key", choices=["id", "tenant", "none"], default="id", help="record key")
    parser.add_argument(
        "--encoding", choices=["json", "msgpack"], default="json", help="value encoding (content-type header)"
    )
    parser.add_argument("--id-prefix", metavar="PREFIX", help="request id prefix (default: s<seed>-)")
    parser.add_argument("--json", action="store_true", help="print the stats as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``stream-service produce``: 0 when every record was acknowledged."""
    meter = WorkMeter(tool_progress(sys.stderr, json_output=args.json), "sent")
    try:
        config = tool_config(args, {"topic": "topics.input"})
        stats = asyncio.run(
            produce_requests(
                tools_options(config),
                config.topics.input,
                args.count,
                rate=args.rate,
                tenants=args.tenants,
                tenant_weights=args.tenant_weights,
                profiles=args.profiles,
                priorities=args.priorities,
                duplicate_ratio=args.duplicate_ratio,
                bad_ratio=args.bad_ratio,
                prompt_bytes=args.prompt_bytes,
                seed=args.seed,
                key=args.key,
                encoding=args.encoding,
                id_prefix=args.id_prefix,
                meter=meter,
            )
        )
    except (ValueError, ConfigError, KafkaError, OSError) as exc:
        meter.finish()
        print(f"produce: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    meter.finish()
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(stats), indent=2).decode() + "\n")
    else:
        bad = ", ".join(f"{kind} {n}" for kind, n in stats.bad.items()) or "none"
        print(
            f"sent {stats.sent} records to {stats.topic} in {stats.elapsed_s:.2f} s "
            f"({stats.rate_per_s:,.0f}/s): {stats.valid} valid, {stats.duplicates} duplicates, bad: {bad}"
        )
    return 0
