"""Exactly once on a 3-node cluster (replication 3, min ISR 2), under process and broker faults.

Outputs are read ``read_committed``: every input must have exactly one committed output, and
``reconcile --exactly-once`` must agree. At least once on the same faults may duplicate, within
the in-flight bound, but never miss.
"""

from __future__ import annotations

import asyncio
import random
import signal

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stream_service.clients import tools_options
from stream_service.config import load_config
from stream_service.localkafka import LocalKafka
from stream_service.tools.reconcile import Verdict, reconcile_topics
from tests.integration.harness import (
    Outputs,
    ServiceProcess,
    Topics,
    assert_all_answered,
    create_topics,
    input_offsets,
    produce,
    unique,
    workload,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

REPLICATED = {"min.insync.replicas": "2"}
FAST_GROUP = (
    "--set", "kafka.session_timeout_ms=6000",
    "--set", "kafka.heartbeat_interval_ms=1000",
    "--set", "delivery.drain_timeout_s=5",
    "--set", "kafka.request_timeout_ms=10000",
)  # fmt: skip
EXACTLY_ONCE = ("--set", "delivery.guarantee=exactly_once", *FAST_GROUP)
MAX_IN_FLIGHT = 2_000


async def topics_on(cluster: LocalKafka, input_partitions: int = 8) -> Topics:
    topics = Topics(unique("in"), unique("results"), unique("errors"), unique("group"))
    partitions = {topics.input: input_partitions, topics.results: 4, topics.errors: 1}
    await create_topics(cluster.bootstrap_servers, partitions, replication=3, configs=REPLICATED)
    await asyncio.to_thread(cluster.wait_in_sync, list(partitions))
    return topics


async def verdict(bootstrap: str, topics: Topics, *, exactly_once: bool) -> Verdict:
    options = tools_options(load_config(environ={}, flags={"kafka.bootstrap_servers": bootstrap}))
    return await reconcile_topics(
        options, topics.input, [topics.results, topics.errors], exactly_once=exactly_once
    )


def summary(name: str, total: int, out: Outputs, v: Verdict) -> str:
    return (
        f"{name}: inputs={total} committed outputs={len(out.items)} missing={v.missing} "
        f"duplicates={out.duplicates()}"
    )


async def test_sigkill_three_times_exactly_once(kafka_cluster3: LocalKafka) -> None:
    """SIGKILL ×3 at random points under load: every input has exactly one committed output."""
    bootstrap = kafka_cluster3.bootstrap_servers
    total = 20_000
    topics = await topics_on(kafka_cluster3)
    await produce(bootstrap, topics.input, workload(total, keys=100, seed=41).records)
    offsets = await input_offsets(bootstrap, topics.input)
    args = ("--processor", "echo", "--set", f"executor.max_in_flight={MAX_IN_FLIGHT}", *EXACTLY_ONCE)
    points = sorted(random.Random(7).sample(range(total // 10, total * 8 // 10), 3))
    async with Outputs(bootstrap, topics, read_committed=True) as out:
        for point in points:
            service = await ServiceProcess(bootstrap, topics, *args).start()
            await out.until(out.answered(point), 180, f"{point} committed before a kill")
            await service.kill()
        service = await ServiceProcess(bootstrap, topics, *args).start()
        try:
            await out.until(out.answered(total), 180, "all inputs committed after the kills")
            await out.settle()
        finally:
            assert await service.stop() == 0, service.stderr.decode()[-2000:]
    v = await verdict(bootstrap, topics, exactly_once=True)
    print(summary("eos sigkill x3", total, out, v))
    assert_all_answered(out, offsets)
    assert out.duplicates() == 0
    assert v.ok and v.missing == 0 and v.duplicate_outputs == 0


async def test_group_changes_exactly_once(kafka_cluster3: LocalKafka) -> None:
    """Instances join and leave while records keep arriving: 0 missing, 0 duplicates committed."""
    bootstrap = kafka_cluster3.bootstrap_servers
    total = 20_000
    topics = await topics_on(kafka_cluster3)
    records = workload(total, keys=100, seed=43).records
    args = ("--processor", "echo", "--set", "limiter.global_rate=4000", *EXACTLY_ONCE)
    async with Outputs(bootstrap, topics, read_committed=True) as out:
        first = await ServiceProcess(bootstrap, topics, *args).start()
        second = await ServiceProcess(bootstrap, topics, *args).start()
        producing = asyncio.create_task(produce(bootstrap, topics.input, records))
        try:
            await out.until(out.answered(total // 4), 180, "a quarter committed")
            third = await ServiceProcess(bootstrap, topics, *args).start()
            await third.wait_for("partitions.assigned")
            await out.until(out.answered(total // 2), 180, "half committed")
            assert await first.stop() == 0, first.stderr.decode()[-2000:]
            await producing
            await out.until(out.answered(total), 240, "all committed after the group changes")
            await out.settle()
        finally:
            producing.cancel()
            for service in (second, third):
                assert await service.stop() == 0, service.stderr.decode()[-2000:]
    offsets = await input_offsets(bootstrap, topics.input)
    v = await verdict(bootstrap, topics, exactly_once=True)
    print(summary("eos group changes", total, out, v))
    assert_all_answered(out, offsets)
    assert out.duplicates() == 0 and v.ok


async def leader_and_coordinator(cluster: LocalKafka, topics: Topics, txn_id: str) -> list[int]:
    """The leader of input partition 0 and the transaction coordinator of ``txn_id`` (one or two nodes)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topics.input])
        leader = next(p["leader"] for p in described["partitions"] if p["partition"] == 0)
        coordinator = await admin.find_coordinator(txn_id, coordinator_type=1)
    finally:
        await admin.close()
    return sorted({leader, coordinator})


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_leader_and_transaction_coordinator_killed(kafka_cluster3: LocalKafka, guarantee: str) -> None:
    """The input leader and the transaction coordinator are SIGKILLed mid-run (one at a time) and
    restarted: the same service recovers by itself; exactly once commits each answer once, at
    least once misses nothing."""
    bootstrap = kafka_cluster3.bootstrap_servers
    total = 20_000
    topics = await topics_on(kafka_cluster3)
    await produce(bootstrap, topics.input, workload(total, keys=100, seed=47).records)
    offsets = await input_offsets(bootstrap, topics.input)
    args = (
        "--processor", "echo",
        "--set", "limiter.global_rate=3000",
        "--set", f"executor.max_in_flight={MAX_IN_FLIGHT}",
        "--set", f"delivery.guarantee={guarantee}",
        *FAST_GROUP,
    )  # fmt: skip
    exactly_once = guarantee == "exactly_once"
    service = await ServiceProcess(bootstrap, topics, *args).start()
    try:
        async with Outputs(bootstrap, topics, read_committed=exactly_once) as out:
            await out.until(out.answered(total // 5), 180, "a fifth answered before the faults")
            victims = await leader_and_coordinator(
                kafka_cluster3, topics, f"stream-service-{topics.group}-{topics.input}-0"
            )
            for victim in victims:
                await asyncio.to_thread(kafka_cluster3.kill_node, victim)
                progress = len(out.seen)
                await out.until(
                    lambda o, p=progress: len(o.seen) > p + 500, 180, f"progress with node {victim} down"
                )
                assert not service.exited(), "the service died with a broker"
                await asyncio.to_thread(kafka_cluster3.start_node, victim)
            await out.until(out.answered(total), 240, "all answered after the faults")
            await out.settle()
    finally:
        code = await service.stop(120)
    assert code == 0, service.stderr.decode()[-3000:]
    v = await verdict(bootstrap, topics, exactly_once=exactly_once)
    print(summary(f"{guarantee} broker kills (nodes {victims})", total, out, v))
    assert_all_answered(out, offsets)
    if exactly_once:
        assert out.duplicates() == 0 and v.ok
    else:
        assert v.ok and out.duplicates() <= len(victims) * MAX_IN_FLIGHT


async def test_a_zombie_is_fenced(kafka_cluster3: LocalKafka) -> None:
    """An instance frozen (SIGSTOP) past its session timeout loses its partitions to another; when it
    wakes (SIGCONT) its open transactions are fenced: nothing it wrote late becomes visible."""
    bootstrap = kafka_cluster3.bootstrap_servers
    total = 6_000
    topics = await topics_on(kafka_cluster3, input_partitions=4)
    await produce(bootstrap, topics.input, workload(total, keys=50, seed=53).records)
    offsets = await input_offsets(bootstrap, topics.input)
    args = (
        "--processor", "echo",
        "--set", "limiter.global_rate=500",
        "--set", "delivery.transaction_interval_ms=2000",
        *EXACTLY_ONCE,
    )  # fmt: skip
    async with Outputs(bootstrap, topics, read_committed=True) as out:
        zombie = await ServiceProcess(bootstrap, topics, *args).start()
        await out.until(out.answered(500), 180, "the first instance commits")
        zombie.signal(signal.SIGSTOP)  # frozen with a transaction open
        try:
            successor = await ServiceProcess(bootstrap, topics, *args).start()
            await successor.wait_for("partitions.assigned", 60)
            await out.until(out.answered(1_500), 180, "the successor commits")
        finally:
            zombie.signal(signal.SIGCONT)
        await zombie.wait_for("transaction.fenced", 120)
        try:
            await out.until(out.answered(total), 240, "everything committed")
            await out.settle()
        finally:
            for service in (successor, zombie):
                await service.stop(120)
    v = await verdict(bootstrap, topics, exactly_once=True)
    print(summary("eos zombie", total, out, v))
    assert_all_answered(out, offsets)
    assert out.duplicates() == 0 and v.ok
