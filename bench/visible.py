"""``python -m bench.visible``: when did each output become visible to a ``read_committed`` consumer?

A child process of the latency run (so its work does not stall the load generator's loop). It
reads every partition of ``--topic`` from the start as ``read_committed`` -- an exactly-once
output is returned only once its transaction is committed, an at-least-once one once it is
written -- and notes for each record its ``source-partition`` and ``source-offset`` headers and
the wall-clock time (ms) its fetch was handed over. It logs ``{"event": "visible.ready"}`` once
it is positioned, stops after ``--expect`` records or on SIGTERM, and writes
``[[source_partition, source_offset, seen_ms], ...]`` as msgpack to ``--output``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

SOURCE_PARTITION = "source-partition"
SOURCE_OFFSET = "source-offset"
FETCH_MAX_WAIT_MS = 10  # a fetch the broker parks is answered within this, records or not

Seen = list[tuple[int, int, float]]


def sources(headers: Sequence[tuple[str, bytes]]) -> tuple[int, int] | None:
    """The (source partition, source offset) a service output names in its headers, or None."""
    partition = offset = None
    for key, value in headers:
        if key == SOURCE_PARTITION:
            partition = int(value)
        elif key == SOURCE_OFFSET:
            offset = int(value)
    return None if partition is None or offset is None else (partition, offset)


async def watch(bootstrap: str, topic: str, expect: int, stop: asyncio.Event) -> Seen:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        fetch_max_bytes=32 << 20,
    )
    await consumer.start()
    seen: Seen = []
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            raise RuntimeError(f"topic {topic} has no partitions")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:
            await consumer.position(tp)
        print(json.dumps({"event": "visible.ready", "partitions": len(tps)}), flush=True)
        while len(seen) < expect and not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=20_000)
            now_ms = time.time() * 1000.0
            for records in batch.values():
                for record in records:
                    if (source := sources(record.headers or ())) is not None:
                        seen.append((*source, now_ms))
    finally:
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka's group-less stop, see broker._stop
            await consumer.stop()
    return seen


async def _main(args: argparse.Namespace) -> Seen:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return await watch(args.bootstrap_servers, args.topic, args.expect, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.visible", description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True, help="stop after this many records")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    seen = asyncio.run(_main(args))
    args.output.write_bytes(msgspec.msgpack.encode(seen))
    print(json.dumps({"event": "visible.done", "records": len(seen)}), flush=True)
    return 0


def read_seen(path: Path) -> Seen:
    """What :func:`main` wrote."""
    return [tuple(row) for row in msgspec.msgpack.decode(path.read_bytes())]


def visible_argv(bootstrap: str, topic: str, expect: int, output: Path) -> list[str]:
    """The reader's command line."""
    return [
        sys.executable, "-m", "bench.visible",
        "--bootstrap-servers", bootstrap,
        "--topic", topic,
        "--expect", str(expect),
        "--output", str(output),
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
