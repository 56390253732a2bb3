"""`stream-service topics create|check` against a real broker, as an operator (or the compose init
service) runs it."""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.harness import REPO

pytestmark = pytest.mark.integration


async def topics_command(bootstrap: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream_service", "topics", *args, "--bootstrap-servers", bootstrap,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(REPO),
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_create_makes_the_topics_then_check_and_a_second_create_agree(kafka_bootstrap: str) -> None:
    """create makes the three topics as planned (exit 0), is idempotent, check agrees, and a check
    against a different plan exits 1 naming the difference."""
    tag = uuid.uuid4().hex[:10]
    names = [f"topics-in-{tag}", f"topics-results-{tag}", f"topics-errors-{tag}"]
    flags = ["--input-topic", names[0], "--results-topic", names[1], "--errors-topic", names[2]]
    plan = [*flags, "--partitions", "4", "--output-partitions", "2", "--replication-factor", "1"]
    try:
        code, out = await topics_command(kafka_bootstrap, "create", *plan, "--errors-retention-days", "3")
        assert code == 0, out
        assert out.count("created") == 3 and out.endswith("OK\n"), out

        code, out = await topics_command(kafka_bootstrap, "create", *plan, "--errors-retention-days", "3")
        assert code == 0 and "created" not in out, out

        code, out = await topics_command(kafka_bootstrap, "check", *plan, "--errors-retention-days", "3")
        assert code == 0, out

        code, out = await topics_command(kafka_bootstrap, "check", *flags, "--replication-factor", "1")
        assert code == 1, out
        assert "4 partitions, planned 8" in out
        assert f"retention.ms={3 * 86_400_000}, planned {14 * 86_400_000}" in out
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(names)
        finally:
            await admin.close()


async def test_check_of_missing_topics_exits_1_and_unreachable_kafka_exits_2(kafka_bootstrap: str) -> None:
    """check names each missing topic (exit 1); a broker that cannot be reached is a usage error (exit 2)."""
    tag = uuid.uuid4().hex[:10]
    code, out = await topics_command(
        kafka_bootstrap, "check", "--input-topic", f"absent-{tag}", "--replication-factor", "1"
    )
    assert code == 1 and "missing" in out and f"absent-{tag}" in out, out
    code, out = await topics_command("127.0.0.1:1", "check")
    assert code == 2 and "\ntopics: KafkaConnectionError" in out, out
