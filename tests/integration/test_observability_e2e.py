"""Metrics, health endpoints and audit lines of a running service, against a real broker.

The audit lines are the service's stdout, captured whole: every line must be one JSON object,
and neither a prompt nor a secret may appear in any of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import (
    Outputs,
    ServiceProcess,
    assert_all_answered,
    fresh_topics,
    produce,
    stop_consumer,
    workload,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PARTITIONS = 4
FIRST = 150  # requests before the first scrape
LATER = 250  # requests between the two scrapes
ANSWER_TIMEOUT_S = 90.0
METRICS_TIMEOUT_S = 15.0
API_KEY = f"sk-observe-{uuid.uuid4().hex}"  # held in the config, never shown

EXPECTED_METRICS = (
    "stream_service_requests_total",
    "stream_service_errors_total",
    "stream_service_consumed_total",
    "stream_service_published_total",
    "stream_service_processing_seconds",
    "stream_service_end_to_end_seconds",
    "stream_service_batch_size",
    "stream_service_batch_target_size",
    "stream_service_in_flight_requests",
    "stream_service_in_flight_bytes",
    "stream_service_paused_partitions",
    "stream_service_consumer_lag",
    "stream_service_assigned_partitions",
    "stream_service_limiter_wait_seconds_total",
    "stream_service_cache_hits_total",
    "stream_service_cache_misses_total",
    "stream_service_commits_total",
    "stream_service_rebalances_total",
    "stream_service_retries_total",
    "stream_service_pauses_total",
    "stream_service_event_loop_lag_seconds",
    "stream_service_publish_failures_total",
    "stream_service_commit_failures_total",
    "stream_service_producer_replacements_total",
    "stream_service_cache_evictions_total",
    "stream_service_cache_entries",
    "stream_service_build_info",
    "stream_service_process_threads",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_start_time_seconds",
)


async def input_ranges(bootstrap: str, topic: str, partitions: int, expected: int) -> dict[int, range]:
    """Offsets of the ``expected`` records in ``topic``, per partition.

    Not ``harness.input_offsets``: it asks an unsubscribed consumer's metadata for the partitions,
    which aiokafka has not loaded, so it returns {} and ``assert_all_answered`` checks nothing.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    finally:
        await stop_consumer(consumer)
    offsets = {tp.partition: range(begin[tp], end[tp]) for tp in tps}
    assert sum(len(r) for r in offsets.values()) == expected, offsets
    return offsets


class CapturingService(ServiceProcess):
    """The harness's service process, also keeping every raw stdout line (the harness keeps only
    the lines that parse, so a line that is not JSON would go unnoticed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw: list[bytes] = []

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.raw.append(raw)
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            self.lines.append(line)
            event = self._events.get(line.get("event", ""))
            if event is not None:
                event.set()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    def assert_never_shows(self, *texts: str) -> None:
        everything = b"".join(self.raw) + self.stderr
        for text in texts:
            assert text.encode() not in everything, f"{text!r} appears in the service's output"


def get(port: int, path: str) -> tuple[int, bytes]:
    """GET http://127.0.0.1:port/path -> (status, body), 5xx answers included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Scrape:
    """One /metrics exposition: the declared metric names and every sample's value."""

    def __init__(self, text: str) -> None:
        self.names = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def labels(self, name: str) -> list[dict[str, str]]:
        return [have for sample, have, _ in self.samples if sample == name]


async def scrape(port: int) -> Scrape:
    status, body = await asyncio.to_thread(get, port, "/metrics")
    assert status == 200, body
    return Scrape(body.decode())


async def scrape_until(port: int, predicate: Callable[[Scrape], bool], what: str) -> Scrape:
    """Scrape until ``predicate`` holds: counters move just after the outputs they count are acknowledged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + METRICS_TIMEOUT_S
    while not predicate(found := await scrape(port)):
        if loop.time() > deadline:
            raise AssertionError(f"/metrics never showed {what} within {METRICS_TIMEOUT_S} s")
        await asyncio.sleep(0.2)  # the counters have no change notification to await
    return found


def secret_prompt() -> str:
    return f"Quokka marmalade protocol {uuid.uuid4().hex}"


async def test_metrics_health_and_audit_lines_of_a_running_service(kafka_bootstrap: str) -> None:
    """While a workload is consumed: /healthz and /readyz answer 200, /metrics declares every metric and
    its counters grow between scrapes; the audit lines are JSON, carry the documented fields, and
    never show a prompt or a secret."""
    secret = secret_prompt()
    topics = await fresh_topics(kafka_bootstrap, input_partitions=PARTITIONS)
    bad: list[tuple[bytes | None, bytes]] = [
        (b"bad-schema", json.dumps({"id": "bad-schema", "prompt": secret, "priority": "high"}).encode()),
        (b"bad-json", b"{not json " + secret.encode()),
    ]
    await produce(kafka_bootstrap, topics.input, workload(FIRST, prompt=secret, seed=3).records + bad)
    first_total = FIRST + len(bad)
    env = {"STREAM_SERVICE_HTTP_API_KEY": API_KEY}
    service = CapturingService(kafka_bootstrap, topics, "--processor", "echo", env=env)
    await service.start()
    try:
        await service.wait_for("ops.listening")
        port = service.ops_port()
        assert port is not None
        status, body = await asyncio.to_thread(get, port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok", body

        async with Outputs(kafka_bootstrap, topics) as out:
            await out.until(out.answered(first_total), ANSWER_TIMEOUT_S, "the first requests answered")
            # Partitions are assigned (work was done), so the member is ready.
            status, body = await asyncio.to_thread(get, port, "/readyz")
            assert status == 200 and json.loads(body)["status"] == "ready", body
            before = await scrape_until(
                port,
                lambda s: s.total("stream_service_requests_total") == first_total,
                f"{first_total} requests",
            )
            missing = [name for name in EXPECTED_METRICS if name not in before.names]
            assert not missing, f"not on /metrics: {missing}"

            later = workload(LATER, prompt=f"{secret} later", seed=4).records
            await produce(kafka_bootstrap, topics.input, later)
            total = first_total + LATER
            await out.until(out.answered(total), ANSWER_TIMEOUT_S, "all requests answered")
            after = await scrape_until(
                port,
                lambda s: (
                    s.total("stream_service_requests_total") == total
                    and s.total("stream_service_commits_total") > before.total("stream_service_commits_total")
                    and bool(s.labels("stream_service_consumer_lag"))
                ),
                f"{total} requests, a new commit and lag gauges",
            )
            await out.settle()
    finally:
        code = await service.stop()
    assert code == 0, service.stderr.decode()[-3000:]
    offsets = await input_ranges(kafka_bootstrap, topics.input, PARTITIONS, total)
    assert_all_answered(out, offsets)
    assert out.duplicates() == 0

    # ---- metrics moved with the work
    good = FIRST + LATER
    assert after.total("stream_service_requests_total", outcome="success") == good
    assert after.total("stream_service_requests_total", outcome="error") == len(bad)
    assert after.total("stream_service_errors_total", error_type="validation") == len(bad)
    assert after.total("stream_service_consumed_total") == total
    for name in (
        "stream_service_processing_seconds_count",
        "stream_service_end_to_end_seconds_count",
        "stream_service_batch_size_count",
        "stream_service_cache_misses_total",
    ):
        assert after.total(name) > before.total(name), name
    assert after.total("stream_service_processing_seconds_count") == good
    assert after.total("stream_service_end_to_end_seconds_count") == total
    assert after.total("process_resident_memory_bytes") > 0
    assert after.total("stream_service_assigned_partitions") == PARTITIONS
    assert {labels["topic"] for labels in after.labels("stream_service_consumer_lag")} == {topics.input}

    # ---- audit lines
    assert service.raw and len(service.lines) == len(service.raw), [
        raw for raw in service.raw if not raw.strip().startswith(b"{")
    ][:3]
    assert all(isinstance(line, dict) and "event" in line and "level" in line for line in service.lines)
    service.assert_never_shows(secret, API_KEY)

    (started,) = service.events("service.started")
    assert started["config"]["topics"]["input"] == topics.input
    assert started["config"]["processor"]["http"]["api_key"] == "***"

    assigned = service.events("partitions.assigned")
    assert assigned and assigned[-1]["partitions"] == {topics.input: list(range(PARTITIONS))}

    batches = service.events("batch.completed")
    assert batches
    assert len({line["batch_id"] for line in batches}) == len(batches)
    for line in batches:
        assert line["size"] > 0 and line["latency_s"] >= 0, line
        assert sum(line["outcomes"].values()) == line["size"], line
    assert sum(line["size"] for line in batches) == good  # bad records never reach a batch

    failed = service.events("request.failed")
    errors = {(o.source_partition, o.source_offset) for o in out.items if o.topic == topics.errors}
    assert {(line["partition"], line["offset"]) for line in failed} == errors
    assert len(errors) == len(bad)
    for line in failed:
        assert line["level"] == "warning" and line["error_type"] == "validation", line
        assert line["topic"] == topics.input and line["error"], line
    assert {line["request_id"] for line in failed} == {"bad-schema", None}

    committed = service.events("offsets.committed")
    assert committed
    final: dict[int, int] = {}
    for line in committed:
        for partition, offset in line["offsets"][topics.input].items():
            final[int(partition)] = max(final.get(int(partition), 0), offset)
    assert final == {p: r.stop for p, r in offsets.items() if r}  # everything committed at the end

    (stopped,) = service.events("service.stopped")
    assert stopped["reason"] == "signal" and stopped["stats"]["drained"] is True, stopped


def fingerprint_of(text: str) -> dict[str, Any]:
    """The documented prompt fingerprint, computed independently: length and 16 hex chars of SHA-256."""
    return {"len": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


async def test_audit_requests_lines_fingerprint_prompts(kafka_bootstrap: str) -> None:
    """With observability.audit_requests on, each request gets a request.completed line carrying its
    lineage and a fingerprint of its prompt, never the prompt itself."""
    secret = secret_prompt()
    count = 200
    topics = await fresh_topics(kafka_bootstrap, input_partitions=PARTITIONS)
    await produce(kafka_bootstrap, topics.input, workload(count, prompt=secret, seed=8).records)
    offsets = await input_ranges(kafka_bootstrap, topics.input, PARTITIONS, count)
    args = ("--processor", "echo", "--set", "observability.audit_requests=true")
    service = CapturingService(kafka_bootstrap, topics, *args)
    await service.start()
    try:
        async with Outputs(kafka_bootstrap, topics) as out:
            await out.until(out.answered(count), ANSWER_TIMEOUT_S, "all requests answered")
    finally:
        code = await service.stop()
    assert code == 0, service.stderr.decode()[-3000:]
    assert_all_answered(out, offsets)

    completed = service.events("request.completed")
    assert len(completed) == count
    lineage = {o.request_id: (o.source_partition, o.source_offset) for o in out.items}
    for line in completed:
        seq = int(line["request_id"].split("-")[1])
        assert line["prompt"] == fingerprint_of(f"{secret} #{seq}"), line
        assert (line["partition"], line["offset"]) == lineage[line["request_id"]], line
        assert line["topic"] == topics.input and line["tenant"] == "default" and line["cached"] is False
    service.assert_never_shows(secret)
