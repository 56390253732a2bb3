"""Scale-out for real: separate service processes in one consumer group on an 8-partition topic of a
3-node cluster, scaled 1 -> 4 -> 2 while requests keep arriving (as KEDA would scale them), and
`stream-service reconcile` proves no input was left unanswered."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

import pytest

from stream_service.localkafka import LocalKafka
from stream_service.tools.produce import produce_requests
from tests.integration.harness import REPO, Outputs, ServiceProcess, Topics, create_topics, unique

pytestmark = pytest.mark.integration

PARTITIONS = 8
REQUESTS = 12_000
RATE = 300.0  # requests per second: 40 s of arrivals spanning every scaling step
STEP_TIMEOUT_S = 60.0
ASSIGNED = "partitions.assigned"


def last_assignment(service: ServiceProcess) -> int | None:
    """How many partitions the member's latest assignment gave it (None before the first)."""
    counts = [int(line["count"]) for line in service.lines if line.get("event") == ASSIGNED]
    return counts[-1] if counts else None


async def until_assigned(members: Sequence[ServiceProcess], each: int) -> None:
    """Wait until every member's latest assignment holds ``each`` partitions (the group has settled)."""

    def settled() -> bool:
        return all(last_assignment(m) == each for m in members)

    async with asyncio.timeout(STEP_TIMEOUT_S):
        while True:
            events = [m.event(ASSIGNED) for m in members]
            for event in events:
                event.clear()  # set again by the next assignment line of that member
            if settled():
                return
            waits = [asyncio.ensure_future(e.wait()) for e in events]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()


async def reconcile(bootstrap: str, topics: Topics) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream_service", "reconcile", "--bootstrap-servers", bootstrap,
        "--input-topic", topics.input, "--results-topic", topics.results, "--errors-topic", topics.errors,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(REPO),
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_scaling_1_to_4_to_2_while_producing_loses_nothing(kafka_cluster3: LocalKafka) -> None:
    """One replica, then four (two partitions each), then two (four each, the other two drained and exited
    0), all while requests arrive; afterwards reconcile finds every input answered."""
    bootstrap = kafka_cluster3.bootstrap_servers
    topics = Topics(
        unique("scale-in"), unique("scale-results"), unique("scale-errors"), unique("scale-group")
    )
    await create_topics(
        bootstrap, {topics.input: PARTITIONS, topics.results: 4, topics.errors: 1}, replication=3
    )
    await asyncio.to_thread(kafka_cluster3.wait_in_sync, [topics.input, topics.results, topics.errors])

    members: list[ServiceProcess] = []
    started: list[ServiceProcess] = []  # every process, stopped at the end whatever happened

    async def member() -> ServiceProcess:
        service = ServiceProcess(bootstrap, topics, "--processor", "echo")
        started.append(service)
        return await service.start()

    producing = asyncio.create_task(
        produce_requests(bootstrap, topics.input, REQUESTS, rate=RATE, key="id", seed=11, id_prefix="scale-")
    )
    try:
        members.append(await member())
        await until_assigned(members, PARTITIONS)

        members += [await member() for _ in range(3)]  # scale out: 1 -> 4
        await until_assigned(members, PARTITIONS // 4)
        assert not producing.done(), "the producer finished before the scale-out: raise REQUESTS"

        leaving, members = members[:2], members[2:]  # scale in: 4 -> 2, as a Deployment would
        for service in leaving:
            service.signal(signal.SIGTERM)
        codes = await asyncio.gather(*(s.wait(STEP_TIMEOUT_S) for s in leaving))
        assert codes == [0, 0], [s.stderr.decode()[-2000:] for s in leaving]
        await until_assigned(members, PARTITIONS // 2)
        assert not producing.done(), "the producer finished before the scale-in: raise REQUESTS"

        stats = await producing
        assert stats.sent == REQUESTS
        async with Outputs(bootstrap, topics) as out:
            await out.until(out.answered(REQUESTS), STEP_TIMEOUT_S, "every request answered")
    finally:
        producing.cancel()
        for service in started:
            await service.stop()
    code, verdict = await reconcile(bootstrap, topics)
    assert code == 0, verdict
    assert f"{REQUESTS}/{REQUESTS} inputs answered, 0 missing" in verdict, verdict
