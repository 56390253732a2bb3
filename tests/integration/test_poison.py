"""A poison corpus through a real broker, with the service SIGKILLed and restarted in the middle:
every input is answered (``reconcile``), each class gets the output it should, and the service
never exits on its own."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_service.clients import tools_options
from stream_service.config import load_config
from stream_service.tools.reconcile import reconcile_topics
from tests.integration.harness import Outputs, ServiceProcess, Topics, produce, unique, workload
from tests.integration.poison import corpus, produce_corpus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

EXPECTED = {
    "null header value": "result",
    "invalid UTF-8 header name": "result",
    "MessagePack Ext in metadata": "validation",
    "integer beyond 64 bits": "validation",
    "600 KB tenant": "validation",
    "processor returns an object": "unknown",
    "processor returns a numpy-like scalar": "unknown",
    "processor returns text that is not Unicode": "unknown",
    "processor raises": "unknown",
    "processor hangs": "timeout",
    "output too large": "too_large",
    "tombstone": "validation",
    "random bytes": "validation",
}
RESULTS_MAX_MESSAGE_BYTES = 100_000  # below one full output batch: the broker refuses whole batches
KUBERNETES_SERVICE_ENV = {  # what Kubernetes injects for a Service named stream-service
    "STREAM_SERVICE_PORT": "tcp://10.0.0.7:8080",
    "STREAM_SERVICE_SERVICE_HOST": "10.0.0.7",
    "STREAM_SERVICE_SERVICE_PORT": "8080",
}


async def test_poison_corpus_is_answered_through_kills_and_never_stops_the_service(
    kafka_bootstrap: str,
) -> None:
    """Every poison class plus 3,000 good requests, two SIGKILLs: all answered, right outcomes, exit 0."""
    topics = Topics(unique("in"), unique("results"), unique("errors"), unique("group"))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics.input, 4, 1),
                NewTopic(
                    topics.results, 1, 1, topic_configs={"max.message.bytes": str(RESULTS_MAX_MESSAGE_BYTES)}
                ),
                NewTopic(topics.errors, 1, 1),
            ]
        )
    finally:
        await admin.close()
    poison = corpus(repeat=3)
    await produce_corpus(kafka_bootstrap, topics.input, poison, partition=0)  # offsets 0.. in corpus order
    good = workload(3_000, keys=50, seed=17, prompt="ok: a good request")
    await produce(kafka_bootstrap, topics.input, good.records)
    total = len(poison) + 3_000

    args = (
        "--processor", "python:tests.fixtures.chaos:chaos",
        "--set", "executor.request_timeout_s=1",
        "--set", "retry.max_attempts=2",
        "--set", "retry.max_backoff_s=0.2",
        "--set", "kafka.session_timeout_ms=6000",
        "--set", "kafka.heartbeat_interval_ms=1000",
    )  # fmt: skip
    rng = random.Random(31)
    kill_at = sorted(rng.sample(range(total // 5, total * 3 // 4), 2))
    async with Outputs(kafka_bootstrap, topics) as out:
        for point in kill_at:
            service = await ServiceProcess(kafka_bootstrap, topics, *args, env=KUBERNETES_SERVICE_ENV).start()
            exited = service.exited  # a function of this process, bound now
            await out.until(
                lambda o, p=point, gone=exited: len(o.seen) >= p or gone(), 180, f"{point} answered"
            )
            assert service.proc is not None and service.proc.returncode is None, (
                "the service exited on its own: " + service.stderr.decode()[-2000:]
            )
            await service.kill()
        service = await ServiceProcess(kafka_bootstrap, topics, *args, env=KUBERNETES_SERVICE_ENV).start()
        try:
            await out.until(out.answered(total), 240, "every input answered")
            await out.settle()
        finally:
            assert await service.stop() == 0, service.stderr.decode()[-2000:]

    options = tools_options(load_config(environ={}, flags={"kafka.bootstrap_servers": kafka_bootstrap}))
    verdict = await reconcile_topics(options, topics.input, [topics.results, topics.errors])
    assert verdict.ok and verdict.missing == 0 and verdict.expected == total

    outcome: dict[int, Counter[str]] = {}
    for o in out.items:
        if o.source_partition == 0 and o.source_offset < len(poison):
            kind = "result" if o.topic == topics.results else o.value["error_type"]
            outcome.setdefault(o.source_offset, Counter())[kind] += 1
    by_class: dict[str, Counter[str]] = {}
    for offset, rec in enumerate(poison):
        by_class.setdefault(rec.kind, Counter()).update(outcome.get(offset, Counter()))
    for kind, got in by_class.items():
        print(f"poison: {kind:45} -> {dict(got)}")
        assert set(got) == {EXPECTED[kind]}, f"{kind}: {dict(got)}"
    results = [o for o in out.items if o.topic == topics.results]
    dups = out.duplicates()
    print(f"poison: inputs={total} outputs={len(out.items)} results={len(results)} duplicates={dups}")
