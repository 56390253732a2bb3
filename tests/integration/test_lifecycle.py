"""Lifecycle edges: clear startup failures, and a second signal that forces the exit."""

from __future__ import annotations

import signal

import pytest

from tests.integration.harness import ServiceProcess, Topics, fresh_topics, produce, unique, workload

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _startup_failure(service: ServiceProcess) -> str:
    lines = [line for line in service.lines if line.get("event") == "service.startup_failed"]
    assert len(lines) == 1, service.lines
    return str(lines[0]["error"])


async def test_unreachable_broker_exits_2_with_one_clear_line() -> None:
    """With no broker at the address, the service exits 2 after its startup timeout and says what to check."""
    topics = Topics("in", "out", "err", "g")
    # port 9 (discard) on loopback: nothing listens there
    service = await ServiceProcess(
        "127.0.0.1:9", topics, "--processor", "echo", "--set", "kafka.startup_timeout_s=3"
    ).start()
    assert await service.wait(60) == 2
    error = _startup_failure(service)
    assert "cannot reach Kafka at 127.0.0.1:9" in error and "kafka.bootstrap_servers" in error
    assert b"Traceback" not in service.stderr


async def test_missing_topic_exits_2_naming_it(kafka_bootstrap: str) -> None:
    """A results topic that does not exist stops the service at startup with exit 2, naming the topic."""
    topics = await fresh_topics(kafka_bootstrap)
    missing = unique("no-such-results")
    service = await ServiceProcess(
        kafka_bootstrap, Topics(topics.input, missing, topics.errors, topics.group), "--processor", "echo"
    ).start()
    assert await service.wait(60) == 2
    assert missing in _startup_failure(service)


async def test_second_signal_forces_exit(kafka_bootstrap: str) -> None:
    """SIGTERM starts a drain; a second SIGTERM during it exits at once with 130."""
    topics = await fresh_topics(kafka_bootstrap, input_partitions=2)
    await produce(kafka_bootstrap, topics.input, workload(2_000, seed=3).records)
    service = await ServiceProcess(
        kafka_bootstrap,
        topics,
        "--processor", "python:tests.fixtures.engine_plugins:slow",
        "--set", "executor.concurrency=4",
        "--set", "delivery.shutdown_timeout_s=60",
    ).start()  # fmt: skip
    await service.wait_for("batch.completed")
    service.signal(signal.SIGTERM)
    await service.wait_for("service.stopping")
    service.signal(signal.SIGTERM)
    assert await service.wait(30) == 130
    assert any(line.get("event") == "service.forced_exit" for line in service.lines)
