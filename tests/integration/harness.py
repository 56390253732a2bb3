"""Shared pieces of the engine's integration tests: topics, input, the service as a process, outputs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]
READ_LIMIT_BYTES = 16 * 1024 * 1024  # longest log line the harness reads (asyncio's default is 64 KiB)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    replication: int = 1,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create the topics and wait until every partition has a leader (so nothing races metadata)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, n, replication, topic_configs=dict(configs or {})) for t, n in partitions.items()]
        )
        async with asyncio.timeout(30):
            while await topic_partitions(admin, list(partitions)) != dict(partitions):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # metadata has no change notification; poll it briefly
    finally:
        await admin.close()


async def topic_partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partitions with a leader, per topic, as the cluster describes them now."""
    described = await admin.describe_topics(topics)
    return {
        t["topic"]: sum(1 for p in t["partitions"] if p["leader"] >= 0)
        for t in described
        if t["error_code"] == 0 and t["partitions"]
    }


async def partition_count(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts = await topic_partitions(admin, [topic])
    finally:
        await admin.close()
    assert counts.get(topic), f"topic {topic} has no partitions with a leader"
    return counts[topic]


@dataclass
class Topics:
    input: str
    results: str
    errors: str
    group: str

    def flags(self) -> list[str]:
        return [
            "--input-topic", self.input,
            "--results-topic", self.results,
            "--errors-topic", self.errors,
            "--group-id", self.group,
        ]  # fmt: skip


async def fresh_topics(bootstrap: str, *, input_partitions: int = 8, output_partitions: int = 4) -> Topics:
    t = Topics(unique("in"), unique("results"), unique("errors"), unique("group"))
    await create_topics(bootstrap, {t.input: input_partitions, t.results: output_partitions, t.errors: 1})
    return t


BAD_KINDS = ("not-json", "wrong-schema", "missing-prompt", "oversized", "unknown-profile", "not-utf8")


def bad_payload(kind: str, i: int) -> bytes:
    if kind == "not-json":
        return b"{this is not json " + str(i).encode()
    if kind == "wrong-schema":
        return json.dumps({"id": f"bad-{i}", "prompt": "x", "priority": "high"}).encode()
    if kind == "missing-prompt":
        return json.dumps({"id": f"bad-{i}"}).encode()
    if kind == "oversized":
        return json.dumps({"id": f"bad-{i}", "prompt": "x" * 40_000}).encode()
    if kind == "unknown-profile":
        return json.dumps({"id": f"bad-{i}", "prompt": "hello", "profile_name": "no_such_profile"}).encode()
    return b"\xff\xfe\x00" + bytes(range(128, 160)) + str(i).encode()


@dataclass
class Workload:
    records: list[tuple[bytes | None, bytes]]
    bad: int = 0
    tenants: Counter[str] = field(default_factory=Counter)


def workload(
    n: int,
    *,
    bad_ratio: float = 0.0,
    keys: int | None = None,
    tenants: Sequence[str] = ("default",),
    tenant_weights: Sequence[float] | None = None,
    seed: int = 7,
    prompt: str = "Summarise the quarterly report for the board",
) -> Workload:
    """``n`` requests; with ``keys``, record keys repeat over that many values (ordering tests)."""
    rng = random.Random(seed)
    wl = Workload([])
    for i in range(n):
        key = f"k{i % keys}".encode() if keys else f"r{i}".encode()
        if bad_ratio and rng.random() < bad_ratio:
            wl.records.append((key, bad_payload(BAD_KINDS[wl.bad % len(BAD_KINDS)], i)))
            wl.bad += 1
            continue
        tenant = rng.choices(list(tenants), weights=tenant_weights)[0]
        wl.tenants[tenant] += 1
        body = {"id": f"req-{i}", "prompt": f"{prompt} #{i}", "tenant": tenant, "metadata": {"seq": i}}
        wl.records.append((key, json.dumps(body).encode()))
    return wl


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True)
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key))
            n += 1
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


@dataclass
class Output:
    topic: str
    source_partition: int
    source_offset: int
    request_id: str | None
    value: dict[str, Any]
    partition: int
    offset: int
    timestamp: int


class Outputs:
    """Reads the results and errors topics from the beginning, tracking which inputs are answered."""

    def __init__(self, bootstrap: str, topics: Topics, *, read_committed: bool = False) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.isolation = "read_committed" if read_committed else "read_uncommitted"
        self.items: list[Output] = []
        self.seen: Counter[tuple[int, int]] = Counter()
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Outputs:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=self.isolation,
        )
        await self._consumer.start()
        tps = []
        for topic in (self.topics.results, self.topics.errors):
            for p in range(await partition_count(self.bootstrap, topic)):
                tps.append(TopicPartition(topic, p))
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await stop_consumer(self._consumer)

    async def poll(self, timeout_ms: int = 200) -> int:
        assert self._consumer is not None
        got = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        n = 0
        for tp, recs in got.items():
            for r in recs:
                h = {k: v.decode() for k, v in (r.headers or ())}
                out = Output(
                    tp.topic,
                    int(h["source-partition"]),
                    int(h["source-offset"]),
                    h.get("request-id"),
                    json.loads(r.value),
                    tp.partition,
                    r.offset,
                    r.timestamp,
                )
                self.items.append(out)
                self.seen[(out.source_partition, out.source_offset)] += 1
                n += 1
        return n

    async def until(self, predicate: Callable[[Outputs], bool], timeout_s: float, what: str = "") -> None:
        """Poll until ``predicate`` holds; fail with a count summary after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate(self):
            if loop.time() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s}s waiting for {what}: {len(self.seen)} inputs answered, "
                    f"{len(self.items)} outputs"
                )
            await self.poll()

    async def settle(self, quiet_polls: int = 5) -> None:
        """Read until nothing new arrives for a few polls (to count late duplicates)."""
        quiet = 0
        while quiet < quiet_polls:
            quiet = quiet + 1 if await self.poll() == 0 else 0

    def answered(self, n: int) -> Callable[[Outputs], bool]:
        return lambda o: len(o.seen) >= n

    def duplicates(self) -> int:
        return sum(c - 1 for c in self.seen.values() if c > 1)


def assert_all_answered(outputs: Outputs, input_offsets: Mapping[int, range]) -> None:
    assert input_offsets, "no input offsets to check against"
    missing = [(p, o) for p, offs in input_offsets.items() for o in offs if (p, o) not in outputs.seen]
    assert not missing, f"{len(missing)} inputs have no output, first: {missing[:10]}"


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic``, from the beginning up to the end offsets as of now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        return records
    finally:
        await stop_consumer(consumer)


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a group-less consumer; aiokafka's NoGroupCoordinator.close re-raises the CancelledError of
    its own helper task when that task had not started yet, which is not our cancellation."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def input_offsets(bootstrap: str, topic: str) -> dict[int, range]:
    tps = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        offsets = {tp.partition: range(begin[tp], end[tp]) for tp in tps}
        assert sum(len(r) for r in offsets.values()) > 0, f"input topic {topic} is empty"
        return offsets
    finally:
        await stop_consumer(consumer)


class ServiceProcess:
    """``stream-service run`` as a child process, with its JSON log lines readable by the test."""

    def __init__(self, bootstrap: str, topics: Topics, *extra: str, env: Mapping[str, str] | None = None):
        self.args = [
            sys.executable, "-m", "stream_service", "run",
            "--bootstrap-servers", bootstrap, *topics.flags(), "--metrics-port", "0", *extra,
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "STREAM_SERVICE_OBSERVABILITY__LOG_FORMAT": "json",
            "PYTHONPATH": str(REPO),
            **(env or {}),
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self._events: dict[str, asyncio.Event] = {}
        self._reader: asyncio.Task[None] | None = None
        self.stderr = b""
        self._stderr: list[bytes] = []
        self._err_reader: asyncio.Task[None] | None = None

    async def start(self) -> ServiceProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=str(REPO),
            limit=READ_LIMIT_BYTES,
        )
        self._reader = asyncio.create_task(self._read())
        self._err_reader = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        # Drain stderr as it comes: a full pipe would block the service's writes.
        assert self.proc is not None and self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self._stderr.append(chunk)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            self.lines.append(line)
            event = self._events.get(line.get("event", ""))
            if event is not None:
                event.set()

    def event(self, name: str) -> asyncio.Event:
        ev = self._events.setdefault(name, asyncio.Event())
        if any(line.get("event") == name for line in self.lines):
            ev.set()
        return ev

    async def wait_for(self, name: str, timeout_s: float = 60) -> None:
        """Wait until the service logs the event ``name`` (e.g. ``partitions.assigned``)."""
        async with asyncio.timeout(timeout_s):
            await self.event(name).wait()

    def ops_port(self) -> int | None:
        for line in self.lines:
            if line.get("event") == "ops.listening":
                return int(line["port"])
        return None

    def exited(self) -> bool:
        """Whether the process has ended (by itself or killed)."""
        return self.proc is not None and self.proc.returncode is not None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
            if self._reader is not None:
                await self._reader
            if self._err_reader is not None:
                await self._err_reader
            self.stderr = b"".join(self._stderr)
        return code

    async def stop(self, timeout_s: float = 60) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return await self.wait(timeout_s)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.wait()
