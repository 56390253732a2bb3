"""What the measuring side asks the broker: topics, end offsets, a group's committed offsets, records.

None of it runs in the process under test: the service (or the raw loop) is a child process,
and completion is judged from the broker's view -- the group's committed offsets.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

INPUT_PARTITIONS = 8
OUTPUT_PARTITIONS = 8
_READ_IDLE_TIMEOUT_S = 30.0


def unique(prefix: str) -> str:
    """A fresh name, legal as a topic or group name (letters, digits, ``.``, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"bench-{prefix}-{uuid.uuid4().hex[:10]}")


@dataclass(frozen=True)
class Outputs:
    """The results and errors topics and the consumer group of one run."""

    results: str
    errors: str
    group: str


async def create_topics(
    bootstrap: str, topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] = {}
) -> None:
    """Create ``topics`` (name -> partitions, replication 1) with optional per-topic configs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, n, 1, topic_configs=dict(configs.get(name, {}))) for name, n in topics.items()]
        )
    finally:
        await admin.close()
    failed = [f"{error[0]} ({for_code(error[1]).__name__})" for error in response.topic_errors if error[1]]
    if failed:
        raise RuntimeError(f"cannot create topics: {', '.join(failed)}")
    await _wait_for_leaders(bootstrap, topics)


async def _wait_for_leaders(bootstrap: str, topics: Mapping[str, int], timeout_s: float = 30.0) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
            if all(len(consumer.partitions_for_topic(t) or ()) == n for t, n in topics.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {sorted(topics)} have no leaders after {timeout_s:g} s")
            await asyncio.sleep(0.1)
    finally:
        await _stop(consumer)


async def new_outputs(bootstrap: str, name: str, *, log_append_time: bool = False) -> Outputs:
    """Fresh results/errors topics and group name for one run."""
    out = Outputs(unique(f"{name}-results"), unique(f"{name}-errors"), unique(f"{name}-group"))
    configs = {out.results: {"message.timestamp.type": "LogAppendTime"}} if log_append_time else {}
    await create_topics(bootstrap, {out.results: OUTPUT_PARTITIONS, out.errors: 1}, configs)
    return out


async def delete_topics(bootstrap: str, topics: Iterable[str]) -> None:
    """Best effort: the shared broker's disk should not fill up with benchmark topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.delete_topics(list(topics))
    except KafkaError:
        pass
    finally:
        await admin.close()


class Progress:
    """Polls how far a run got: input committed by the group, records in the output topics."""

    def __init__(self, bootstrap: str, input_topic: str, outputs: Outputs) -> None:
        self._bootstrap = bootstrap
        self._input = input_topic
        self._outputs = outputs
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        self._output_tps: list[TopicPartition] = []
        self._input_tps: list[TopicPartition] = []
        self._coordinator: int | None = None

    async def __aenter__(self) -> Progress:
        await self._admin.start()
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()  # noqa: SLF001
        self._input_tps = _tps(self._consumer, self._input)
        self._output_tps = _tps(self._consumer, self._outputs.results) + _tps(
            self._consumer, self._outputs.errors
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()
        await _stop(self._consumer)

    async def input_end(self) -> int:
        return sum((await self._consumer.end_offsets(self._input_tps)).values())

    async def committed(self) -> int:
        """Sum of the group's committed input offsets (0 before its first commit)."""
        group = self._outputs.group
        try:
            if self._coordinator is None:
                self._coordinator = await self._admin.find_coordinator(group)
            offsets = await self._admin.list_consumer_group_offsets(group, self._coordinator)
        except KafkaError:
            self._coordinator = None  # e.g. the coordinator is still loading the group: ask again
            return 0
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == self._input and meta.offset > 0)

    async def output_end(self) -> int:
        return sum((await self._consumer.end_offsets(self._output_tps)).values())


def _tps(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def read_topic(
    bootstrap: str, topic: str, on_record: Callable[[int, Any], None], *, read_committed: bool = False
) -> int:
    """Call ``on_record(partition, record)`` for every record now in ``topic``; return how many.

    With ``read_committed`` only committed transactions' records (the end is then the last
    stable offset: the topic must have no open transaction left)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=32 << 20,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        tps = _tps(consumer, topic)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        await consumer.seek_to_beginning(*tps)
        n = 0
        last_progress = time.monotonic()
        while remaining:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, records in batch.items():
                for record in records:
                    on_record(tp.partition, record)
                n += len(records)
            for tp in list(remaining):  # the position, not the last record: it steps over markers
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > _READ_IDLE_TIMEOUT_S:
                raise TimeoutError(f"reading {topic}: no records for {_READ_IDLE_TIMEOUT_S:g} s, {n} read")
        return n
    finally:
        await _stop(consumer)


async def _stop(consumer: AIOKafkaConsumer) -> None:
    # aiokafka's group-less consumer may re-raise its own helper task's CancelledError on stop;
    # that is not our cancellation unless our task is being cancelled.
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
