"""The references: minimal hand-written aiokafka loops, run like the service as child processes.

W1 (``--concurrency`` not given): getmany -> decode -> encode -> batched produce -> await acks ->
commit, nothing else. With the defaults its delivery settings are the service's (consumer
``read_committed``, producer idempotent with ``acks=all``, 5 ms linger, 256 KiB batches): W1 (a).
``--acks 1 --no-idempotence --read-uncommitted`` is W1 (a'), what a hand-written consumer does.

W2 (``--concurrency C --sleep-ms 20``): each batch from getmany is handled by
``asyncio.gather`` under a semaphore of C; every request awaits 20 ms (standing for a remote
call), then its answer is sent; once the batch's answers are acknowledged, its offsets are
committed -- the service's order of things, without its engine.

With ``--lineage`` each answer carries the service's ``source-partition``/``source-offset``
headers, so the latency run can match it to its input: the raw loop as the latency reference.

It logs the same ``partitions.assigned`` JSON line as the service when it joins, so both are
timed alike (``python -m bench.raw_loop --bootstrap-servers ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from stream_service.messages import Request, Result
from stream_service.wire import SOURCE_OFFSET, SOURCE_PARTITION

MAX_RECORDS = 4096  # per getmany, as the service's poll


class _AnnounceAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    async def on_partitions_revoked(self, revoked: object) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[object]) -> None:
        line = {
            "timestamp": datetime.now(UTC).isoformat(),
            "event": "partitions.assigned",
            "count": len(assigned),
        }
        print(json.dumps(line), flush=True)


class _Echo:
    """Turns one input record into the bytes of its Result (what the service's echo answers)."""

    def __init__(self) -> None:
        self._decode = msgspec.json.Decoder(Request).decode
        self._encode = msgspec.json.Encoder().encode

    def __call__(self, value: bytes, processing_time: float = 0.0) -> tuple[bytes, bytes]:
        req = self._decode(value)
        out = Result(
            id=req.id,
            content=req.prompt,
            processing_time=processing_time,
            tenant=req.tenant,
            profile_name=req.profile_name,
            metadata=req.metadata,
        )
        return self._encode(out), req.id.encode()


async def raw_loop(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    output_topic: str,
    total: int,
    *,
    concurrency: int | None = None,
    sleep_s: float = 0.0,
    lineage: bool = False,
) -> int:
    """Process ``total`` records (W1; or W2 when ``concurrency`` is given); return how many.
    With ``lineage`` (W1 only) each answer names its input in the service's lineage headers."""
    echo = _Echo()
    gate = asyncio.Semaphore(concurrency or 1)

    async def answer(value: bytes) -> asyncio.Future[Any]:
        async with gate:
            started = time.perf_counter()
            await asyncio.sleep(sleep_s)
            out, key = echo(value, time.perf_counter() - started)
        return await producer.send(output_topic, out, key=key)  # type: ignore[no-any-return]

    done = 0
    while done < total:
        batch = await consumer.getmany(timeout_ms=100, max_records=MAX_RECORDS)
        records = [rec for recs in batch.values() for rec in recs]
        if not records:
            continue
        if concurrency is None:
            futures = []
            for rec in records:
                out, key = echo(rec.value)
                headers = _lineage(rec) if lineage else None
                futures.append(await producer.send(output_topic, out, key=key, headers=headers))
        else:
            futures = await asyncio.gather(*(answer(rec.value) for rec in records))
        await asyncio.gather(*futures)
        await consumer.commit()
        done += len(records)
    return done


def _lineage(rec: Any) -> list[tuple[str, bytes]]:
    return [(SOURCE_PARTITION, b"%d" % rec.partition), (SOURCE_OFFSET, b"%d" % rec.offset)]


async def run(args: argparse.Namespace) -> float:
    """Start the clients, run the loop, stop them; return the seconds the loop took."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        isolation_level="read_uncommitted" if args.read_uncommitted else "read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap_servers,
        acks="all" if args.acks == "all" else int(args.acks),
        enable_idempotence=not args.no_idempotence,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    await consumer.start()
    consumer.subscribe([args.input_topic], listener=_AnnounceAssignment())
    started = time.perf_counter()
    try:
        await raw_loop(
            consumer,
            producer,
            args.results_topic,
            args.total,
            concurrency=args.concurrency,
            sleep_s=args.sleep_ms / 1000.0,
            lineage=args.lineage,
        )
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_loop", description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--results-topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--total", type=int, required=True, help="records to process before exiting")
    parser.add_argument(
        "--acks", choices=("all", "1", "0"), default="all", help="producer acks (default all)"
    )
    parser.add_argument("--no-idempotence", action="store_true", help="producer without idempotence")
    parser.add_argument("--read-uncommitted", action="store_true", help="consumer isolation read_uncommitted")
    parser.add_argument("--concurrency", type=int, help="W2: requests awaited at once per batch")
    parser.add_argument(
        "--lineage", action="store_true", help="W1: source-partition/source-offset headers on each answer"
    )
    parser.add_argument("--sleep-ms", type=float, default=0.0, help="W2: what each request awaits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    elapsed = asyncio.run(run(args))
    print(json.dumps({"event": "raw_loop.done", "records": args.total, "elapsed_s": elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
