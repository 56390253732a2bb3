"""W1(a): the ceiling -- a minimal hand-written aiokafka loop.

getmany -> decode -> encode -> batched produce -> await acks -> commit, nothing else.

Run as a child process like the service (``python -m bench.raw_loop --bootstrap-servers ...``):
it logs the same ``partitions.assigned`` JSON line when it joins, so both are timed alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from stream_service.messages import Request, Result


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


async def raw_loop(bootstrap: str, input_topic: str, output_topic: str, group: str, total: int) -> float:
    """Process ``total`` records; return the seconds from start until the last offset is committed."""
    decoder = msgspec.json.Decoder(Request)
    encoder = msgspec.json.Encoder()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    await consumer.start()
    consumer.subscribe([input_topic], listener=_AnnounceAssignment())
    started = time.perf_counter()
    done = 0
    try:
        while done < total:
            batch = await consumer.getmany(timeout_ms=100, max_records=4096)
            futures = []
            for records in batch.values():
                for rec in records:
                    req = decoder.decode(rec.value)
                    out = Result(
                        id=req.id,
                        content=req.prompt,
                        processing_time=0.0,
                        tenant=req.tenant,
                        profile_name=req.profile_name,
                        metadata=req.metadata,
                    )
                    futures.append(
                        await producer.send(output_topic, encoder.encode(out), key=req.id.encode())
                    )
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
                done += len(futures)
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_loop", description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--results-topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--total", type=int, required=True, help="records to process before exiting")
    args = parser.parse_args(argv)
    elapsed = asyncio.run(
        raw_loop(args.bootstrap_servers, args.input_topic, args.results_topic, args.group_id, args.total)
    )
    print(json.dumps({"event": "raw_loop.done", "records": args.total, "elapsed_s": elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
