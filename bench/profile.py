"""Profile stream_service in-process under cProfile on one workload; print self time by module.

    .venv/bin/python -m bench.profile --bootstrap-servers HOST:PORT --count 100000 \
        --set cache.enabled=false --set processor.hrv=false            # W1-like
    .venv/bin/python -m bench.profile --bootstrap-servers HOST:PORT --count 20000 \
        --set processor.name=python:bench.plugins:sleep20 --set executor.concurrency=256 \
        --set cache.enabled=false --set processor.hrv=false            # W2-like

cProfile roughly doubles the cost of Python calls: read the shares, not the seconds.
``python -m bench.spy`` samples the service with py-spy instead, without that distortion.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_service.config import load_config
from stream_service.observability.logging import configure_logging
from stream_service.service import Service
from stream_service.tools.produce import produce_requests

POLL_S = 0.01  # how often the profiler checks whether the run is finished


def _group(path: str) -> str:
    if "stream_service/" in path:
        return "stream_service:" + path.split("stream_service/")[-1]
    if "aiokafka/" in path:
        return "aiokafka:" + path.split("aiokafka/")[-1].split("/")[0]
    if "asyncio" in path:
        return "asyncio"
    return "builtins" if path == "~" else path.rsplit("/", 1)[-1]


async def _run(args: argparse.Namespace, profiler: cProfile.Profile) -> tuple[float, float]:
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "input": f"prof-in-{suffix}",
        "results": f"prof-results-{suffix}",
        "errors": f"prof-errors-{suffix}",
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics["input"], 8, 1),
                NewTopic(topics["results"], 8, 1),
                NewTopic(topics["errors"], 1, 1),
            ]
        )
    finally:
        await admin.close()
    await produce_requests(args.bootstrap_servers, topics["input"], args.count, prompt_bytes=200, seed=1)
    flags: dict[str, object] = {
        "kafka.bootstrap_servers": args.bootstrap_servers,
        "topics.input": topics["input"],
        "topics.results": topics["results"],
        "topics.errors": topics["errors"],
        "topics.group_id": f"prof-{suffix}",
        "processor.name": "echo",
        "observability.metrics_port": None,
        "observability.log_level": "warning",
    }
    for item in args.set or ():
        key, _, value = item.partition("=")
        flags[key] = value
    configure_logging(level="warning", fmt="json")
    service = Service(load_config(environ={}, flags=flags))
    task = asyncio.create_task(service.run())
    while service.parts is None or not service.parts.engine.ledger.states:  # noqa: ASYNC110 - no event to await
        await asyncio.sleep(POLL_S)  # the profile starts once partitions are assigned
    started, cpu = time.perf_counter(), time.process_time()
    profiler.enable()
    ledger = service.parts.engine.ledger
    while sum(s.tracker.committable() or 0 for s in ledger.states.values()) < args.count or ledger.tracked:  # noqa: ASYNC110
        await asyncio.sleep(POLL_S)
    profiler.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    service.request_stop()
    await task
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    profiler = cProfile.Profile()
    elapsed, cpu = asyncio.run(_run(args, profiler))
    print(
        f"{args.count} records in {elapsed:.2f} s ({args.count / elapsed:,.0f}/s), {cpu:.2f} CPU s (profiled)"
    )
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = {}
    for (path, _line, _fn), (_cc, _nc, self_s, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        groups[_group(path)] = groups.get(_group(path), 0.0) + self_s
    total = sum(groups.values())
    for name, self_s in sorted(groups.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{100 * self_s / total:5.1f}%  {self_s:7.3f} s  {name}")


if __name__ == "__main__":
    main()
