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
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_service.clients import for_client, tools_options
from stream_service.errors import ConfigError
from stream_service.exit_codes import ExitCode
from stream_service.messages import Request
from stream_service.tools.batch_sender import BatchProducer, BatchSender
from stream_service.tools.connection import add_connection_arguments, tool_config
from stream_service.tools.pacing import Pace
from stream_service.wire import CONTENT_TYPE, CONTENT_TYPES, Encoding

__all__ = ["BAD_KINDS", "Generated", "ProduceStats", "RequestGenerator", "produce_requests", "register"]

KeyMode = Literal["id", "tenant", "none"]
_T = TypeVar("_T")
BAD_KINDS = ("invalid_json", "wrong_schema", "oversized_prompt", "unknown_profile", "non_utf8")
DEFAULT_PROFILES = ("neutral_professional", "creative_storytelling", "marketing_enthusiastic", "tech_startup")
# Larger than the service's default limits.max_prompt_bytes (32 KiB).
OVERSIZED_PROMPT_BYTES = 40 * 1024
_RECENT_FOR_DUPLICATES = 1024
_PROMPT_POOL = 256
_CHUNK_RECORDS = 5_000  # at most this many records generated between hand-offs to the producer
_BATCH_BYTES = 512 * 1024
_WORDS = (
    "please write a short friendly note about our new product launch for the team and customers "
    "explain how the feature helps people save time every day with clear simple steps and examples "
    "include a warm greeting a concrete story about the morning coffee a bright red bicycle and the "
    "quiet park near the office then finish with a question inviting readers to try it this week"
).split()


class Generated(msgspec.Struct, frozen=True):
    """One record to send, and what kind it is (``valid``, ``duplicate`` or a bad kind)."""

    key: bytes | None
    value: bytes
    kind: str
    tenant: str


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


class RequestGenerator:
    """Deterministic records for a seed: the same arguments always give the same sequence.

    Raises ValueError for ratios outside [0, 1] or weights that do not match the tenants.
    """

    def __init__(
        self,
        *,
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
    ) -> None:
        if not tenants or not profiles or not priorities:
            raise ValueError("tenants, profiles and priorities must not be empty")
        if tenant_weights is not None and len(tenant_weights) != len(tenants):
            raise ValueError(f"{len(tenant_weights)} tenant weights for {len(tenants)} tenants")
        for name, ratio in (("duplicate_ratio", duplicate_ratio), ("bad_ratio", bad_ratio)):
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {ratio}")
        self._rng = random.Random(seed)
        self._random = self._rng.random
        self._tenants = list(tenants)
        self._weights = list(tenant_weights) if tenant_weights is not None else None
        self._profiles = list(profiles)
        self._priorities = list(priorities)
        self._duplicate_ratio = duplicate_ratio
        self._bad_ratio = bad_ratio
        self._key = key
        self._encode = msgspec.json.encode if encoding == "json" else msgspec.msgpack.encode
        self._encoding = encoding
        self._id_prefix = id_prefix if id_prefix is not None else f"s{seed}-"
        self._recent: deque[tuple[str, str, str]] = deque(maxlen=_RECENT_FOR_DUPLICATES)
        self._pool = [self._prompt_body(prompt_bytes) for _ in range(_PROMPT_POOL)]
        self.headers = [(CONTENT_TYPE, CONTENT_TYPES[encoding].encode())]

    def _prompt_body(self, size: int) -> str:
        words: list[str] = []
        length = 0
        while length < size:
            word = self._rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        return " ".join(words)[: max(1, size)]

    def __iter__(self) -> Iterator[Generated]:
        index = 0
        while True:
            yield self.make(index)
            index += 1

    def make(self, index: int) -> Generated:
        """The record at position ``index`` (call in order: choices consume the seeded stream)."""
        pick = self._pick
        request_id = f"{self._id_prefix}{index:09d}"
        roll = self._random()
        if roll < self._bad_ratio:
            tenant = self._tenant()
            kind = pick(BAD_KINDS)
            value = self._bad(kind, request_id, tenant)
            return Generated(self._record_key(request_id, tenant), value, kind, tenant)
        if self._recent and roll < self._bad_ratio + self._duplicate_ratio:
            prompt, tenant, profile = pick(self._recent)
            kind = "duplicate"
        else:
            tenant, profile = self._tenant(), pick(self._profiles)
            # The index makes every prompt unique, so only intended duplicates hit the cache.
            prompt = f"{pick(self._pool)} (request {index})"
            self._recent.append((prompt, tenant, profile))
            kind = "valid"
        request = Request(
            id=request_id, prompt=prompt, tenant=tenant, profile_name=profile, priority=pick(self._priorities)
        )
        return Generated(self._record_key(request_id, tenant), self._encode(request), kind, tenant)

    def _pick(self, items: Sequence[_T]) -> _T:
        # random() * n rather than choice(): a third of the cost, just as deterministic; a
        # single option consumes no randomness.
        n = len(items)
        return items[0] if n == 1 else items[int(self._random() * n)]

    def _tenant(self) -> str:
        if self._weights is None:
            return self._pick(self._tenants)
        return self._rng.choices(self._tenants, self._weights)[0]

    def _record_key(self, request_id: str, tenant: str) -> bytes | None:
        if self._key == "id":
            return request_id.encode()
        if self._key == "tenant":
            return tenant.encode()
        return None

    def _bad(self, kind: str, request_id: str, tenant: str) -> bytes:
        if kind == "invalid_json":
            return (
                b'{"id": "' + request_id.encode() + b'", "prompt": ' if self._encoding == "json" else b"\xc1"
            )
        if kind == "wrong_schema":
            return self._encode({"id": request_id, "prompt": ["not", "a", "string"], "tenant": tenant})
        if kind == "oversized_prompt":
            request = Request(id=request_id, prompt="x" * OVERSIZED_PROMPT_BYTES, tenant=tenant)
            return self._encode(request)
        if kind == "unknown_profile":
            request = Request(id=request_id, prompt="hello", tenant=tenant, profile_name="no-such-profile")
            return self._encode(request)
        return b"\xff\xfe\xfd not utf-8 \x80"


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
) -> ProduceStats:
    """Send ``count`` generated requests to ``topic`` and wait until Kafka acknowledged all.

    ``bootstrap`` is a bootstrap-servers string or a dict of aiokafka client options.
    ``rate`` is records per second (0: as fast as possible), kept from the start of the run
    without waiting for acknowledgements in between. Ids are ``{id_prefix}{n:09d}`` (default
    prefix ``s{seed}-``). The producer (``make_producer(**options)``) is stopped however this
    ends, cancellation during its start included. Raises KafkaError when records cannot be
    delivered, ValueError for an infinite ``rate``.
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
            )
        )
    except (ValueError, ConfigError, KafkaError, OSError) as exc:
        print(f"produce: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(stats), indent=2).decode() + "\n")
    else:
        bad = ", ".join(f"{kind} {n}" for kind, n in stats.bad.items()) or "none"
        print(
            f"sent {stats.sent} records to {stats.topic} in {stats.elapsed_s:.2f} s "
            f"({stats.rate_per_s:,.0f}/s): {stats.valid} valid, {stats.duplicates} duplicates, bad: {bad}"
        )
    return 0
