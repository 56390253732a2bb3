"""Shared fixtures: a real Kafka for integration tests, wherever the tests run.

Where ``kafka_bootstrap`` gets its broker, first match wins:

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: that cluster is used as is (nothing is started).
2. A Docker engine answers within 2 s: a testcontainers ``KafkaContainer`` (KRaft).
3. Otherwise a local broker JVM (:class:`stream_service.localkafka.LocalKafka`): needs ``java`` 17+,
   and ``mvn`` once to cache the jars.

If none is possible the test fails (never skips) and says what is missing. ``kafka_cluster3`` and
``local_broker`` always use the local launcher, even when ``KAFKA_BOOTSTRAP_SERVERS`` is set, because
their tests kill and restart brokers; each is started only if a test asks for it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import settings

from stream_service.localkafka import LocalKafka, missing_prerequisites

# Property tests run ``ci`` (hypothesis' default size) unless ``--hypothesis-profile=nightly`` asks for
# twenty times as many examples (README: Testing).
settings.register_profile("ci", max_examples=100)
settings.register_profile("nightly", max_examples=2_000)
settings.load_profile("ci")

_DOCKER_PING_TIMEOUT_S = 2
_CONTAINER_IMAGE = "confluentinc/cp-kafka:7.9.0"  # Kafka 3.9, KRaft
_TOPIC_READY_TIMEOUT_S = 30.0

# Local clusters started by the session fixtures below; healed after every test (see _heal_clusters).
_LOCAL_CLUSTERS: list[LocalKafka] = []
# One line per broker the session provisioned, shown in the terminal summary.
_PROVISIONED: list[str] = []


def _docker_engine_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False  # no engine to ask: skip the SDK, whose failed ping leaks a socket
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker  # type: ignore[import-untyped]

            client = docker.from_env(timeout=_DOCKER_PING_TIMEOUT_S)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()  # finalise any socket the SDK dropped while ResourceWarning is ignored


def _start_local(nodes: int, why: str) -> LocalKafka:
    missing = missing_prerequisites()
    if missing:
        pytest.fail(f"{why} needs a local Kafka broker, but: {'; '.join(missing)}", pytrace=False)
    cluster = LocalKafka(nodes=nodes).start()
    _LOCAL_CLUSTERS.append(cluster)
    _PROVISIONED.append(
        f"{why}: local Kafka ({nodes} node(s)) at {cluster.bootstrap_servers}, "
        f"ready in {cluster.started_in_s or 0.0:.1f} s"
    )
    return cluster


def _stop_local(cluster: LocalKafka) -> None:
    _LOCAL_CLUSTERS.remove(cluster)
    cluster.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which brokers the session started and how long they took to become ready."""
    for line in _PROVISIONED:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Kafka cluster shared by the whole session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_engine_answers():
        from testcontainers.community.kafka import KafkaContainer

        container = KafkaContainer(_CONTAINER_IMAGE).with_kraft()
        container.with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        with container:
            _PROVISIONED.append(f"kafka_bootstrap: {_CONTAINER_IMAGE} at {container.get_bootstrap_server()}")
            yield container.get_bootstrap_server()
        return
    missing = missing_prerequisites()
    if missing:
        pytest.fail(
            "integration tests need Kafka: set KAFKA_BOOTSTRAP_SERVERS, or run a Docker engine, "
            f"or install what the local broker needs: {'; '.join(missing)}",
            pytrace=False,
        )
    cluster = _start_local(1, "kafka_bootstrap")
    try:
        yield cluster.bootstrap_servers
    finally:
        _stop_local(cluster)


@pytest.fixture(scope="session")
def kafka_cluster3() -> Iterator[LocalKafka]:
    """Its own local 3-node cluster (RF 3, min ISR 2) for tests that kill and restart nodes."""
    cluster = _start_local(3, "kafka_cluster3")
    try:
        yield cluster
    finally:
        _stop_local(cluster)


@pytest.fixture(scope="session")
def local_broker() -> Iterator[LocalKafka]:
    """Its own local single broker that a test may stop and restart (``stop_node(1)``/``start_node(1)``)."""
    cluster = _start_local(1, "local_broker")
    try:
        yield cluster
    finally:
        _stop_local(cluster)


@pytest.fixture(autouse=True)
def _heal_clusters() -> Iterator[None]:
    """After each test, restart any node a test stopped or killed, so the next test gets a whole cluster."""
    yield
    for cluster in _LOCAL_CLUSTERS:
        stopped = [i for i in cluster.node_ids if not cluster.is_running(i)]
        for node_id in stopped:
            cluster.start_node(node_id, wait=False)
        if stopped:
            cluster.wait_ready(stopped)


class TopicFactory(Protocol):
    """Creates a uniquely named topic and returns its name; it is deleted after the test."""

    async def __call__(
        self,
        partitions: int = 1,
        *,
        replication_factor: int = 1,
        configs: dict[str, str] | None = None,
        prefix: str = "test",
    ) -> str: ...


@pytest.fixture
async def topic_factory(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """``await topic_factory(4)`` makes a ``test-<uuid>`` topic with 4 partitions, ready for use."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def create(
        partitions: int = 1,
        *,
        replication_factor: int = 1,
        configs: dict[str, str] | None = None,
        prefix: str = "test",
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex}"
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor, topic_configs=configs or {})]
        )
        errors = [e for e in response.topic_errors if e[1] != 0]
        assert not errors, f"creating topic {name} failed: {errors}"
        created.append(name)
        await _wait_for_leaders(admin, name, partitions)
        return name

    try:
        yield create
    finally:
        if created:
            try:
                await admin.delete_topics(created)
            except Exception:
                pass  # best effort: a test that broke the cluster must not also fail here
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    """Wait until metadata shows every partition with a leader, so the first produce does not race it."""
    async with asyncio.timeout(_TOPIC_READY_TIMEOUT_S):
        while True:
            described = await admin.describe_topics([topic])
            parts = [p for t in described if t["topic"] == topic for p in t["partitions"]]
            if len(parts) == partitions and all(p["leader"] >= 0 for p in parts):
                return
            await asyncio.sleep(0.05)  # metadata has no change notification; poll it briefly
