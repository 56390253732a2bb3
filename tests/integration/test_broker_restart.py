"""The service survives its broker going away for 10 seconds, without being restarted itself."""

from __future__ import annotations

import asyncio

import pytest

from stream_service.localkafka import LocalKafka
from tests.integration.harness import (
    Outputs,
    ServiceProcess,
    assert_all_answered,
    fresh_topics,
    input_offsets,
    produce,
    workload,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OUTAGE_S = 10  # how long the broker stays down


async def test_broker_restart_mid_run_loses_nothing(local_broker: LocalKafka) -> None:
    """The broker is stopped for 10 s mid-run and restarted: the same service process recovers by
    itself and every input is answered."""
    bootstrap = local_broker.bootstrap_servers
    total = 30_000
    topics = await fresh_topics(bootstrap, input_partitions=8)
    await produce(bootstrap, topics.input, workload(total, seed=17).records)
    offsets = await input_offsets(bootstrap, topics.input)
    # a global rate keeps the run going across the outage
    args = (
        "--processor",
        "echo",
        "--set",
        "limiter.global_rate=3000",
        "--set",
        "kafka.request_timeout_ms=5000",
    )
    service = await ServiceProcess(bootstrap, topics, *args).start()
    try:
        async with Outputs(bootstrap, topics) as out:
            await out.until(out.answered(total // 5), 120, "a fifth answered before the outage")
        await asyncio.to_thread(local_broker.stop_node, 1)
        await asyncio.sleep(OUTAGE_S)  # the outage itself is the scenario, not synchronisation
        assert service.proc is not None and service.proc.returncode is None, "service died with the broker"
        await asyncio.to_thread(local_broker.start_node, 1)
        async with Outputs(bootstrap, topics) as out:
            await out.until(out.answered(total), 180, "all answered after the broker came back")
            await out.settle()
    finally:
        code = await service.stop(120)
    assert code == 0, service.stderr.decode()[-3000:]
    assert_all_answered(out, offsets)
    print(f"broker-restart: inputs={total} outputs={len(out.items)} duplicates={out.duplicates()}")
