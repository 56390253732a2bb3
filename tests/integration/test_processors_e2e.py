"""Each processor kind, the result cache and the per-tenant quota, run as a service against a real broker.

Every test checks the engine's promise too: each input offset is answered exactly once, on the
results or the errors topic (through the lineage headers of the outputs).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from stream_service.messages import HRV_DIMENSIONS
from stream_service.processors.profiles import ProfileRegistry
from tests.fixtures.fake_openai import FakeOpenAI, Reply
from tests.integration.harness import (
    Output,
    Outputs,
    ServiceProcess,
    Topics,
    assert_all_answered,
    fresh_topics,
    produce,
    stop_consumer,
    workload,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REQUESTS = 300
PARTITIONS = 4
PROMPT = "Summarise the quarterly report for the board"  # the harness workload appends " #<i>"
PROFILE = "neutral_professional"  # the Request default, which the workload relies on
HTTP_MODEL = "e2e-model"
KEYWORDS = ("quarterly", "board")
SHOUT_HRV = [0.5, 1.0, 0.0, 0.5, 0.0, 0.5, 0.0, 0.5]  # what readme_plugin.shout supplies itself
ANSWER_TIMEOUT_S = 90.0


def prompt_of(result: dict[str, Any]) -> str:
    """The prompt the harness workload wrote for the request this result answers."""
    return f"{PROMPT} #{int(result['id'].split('-')[1])}"


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


def http_args(server: FakeOpenAI) -> list[str]:
    return [
        "--processor", "http",
        "--set", f"processor.http.base_url={server.base_url}",
        "--set", f"processor.http.model={HTTP_MODEL}",
        "--set", "processor.http.timeout_s=10",
    ]  # fmt: skip


def assert_hrv_vector(result: dict[str, Any]) -> None:
    vector = result["hrv_vector"]
    assert isinstance(vector, list) and len(vector) == HRV_DIMENSIONS, result
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in vector), vector


def check_resonance(result: dict[str, Any]) -> None:
    assert_hrv_vector(result)
    assert result["content"].strip(), result
    assert result["content"] != prompt_of(result)


def check_echo(result: dict[str, Any]) -> None:
    assert result["content"] == prompt_of(result)


def check_http(result: dict[str, Any]) -> None:
    # FakeOpenAI answers "[<model>] <user message>": the prompt went out and the completion came back.
    assert result["content"] == f"[{HTTP_MODEL}] {prompt_of(result)}"
    assert result["metadata"]["model"] == HTTP_MODEL
    assert_hrv_vector(result)


def check_keyword_tagger(result: dict[str, Any]) -> None:
    words = prompt_of(result).split()
    assert result["content"] == f"{' '.join(words[:3])} [{', '.join(KEYWORDS)}]"
    assert result["metadata"]["keywords"] == list(KEYWORDS)
    assert result["metadata"]["words"] == len(words)
    assert result["metadata"]["seq"] == int(result["id"].split("-")[1])  # the request's own metadata kept


def check_shout(result: dict[str, Any]) -> None:
    assert result["content"] == prompt_of(result).upper() + "!"
    assert result["hrv_vector"] == SHOUT_HRV  # the plugin's own vector: the extractor was skipped


@dataclass(frozen=True)
class Case:
    """One processor: how to select it, and what each of its results must look like."""

    args: Callable[[FakeOpenAI], Sequence[str]]
    check: Callable[[dict[str, Any]], None]
    uses_http: bool = False
    env: dict[str, str] = field(default_factory=dict)


TAGGER_OPTIONS = "processor.options=" + json.dumps({"keywords": KEYWORDS, "max_words": 3})
API_KEY = f"sk-e2e-{uuid.uuid4().hex}"  # a secret the service must send but never show

CASES = [
    pytest.param(Case(lambda _: ["--processor", "resonance"], check_resonance), id="resonance"),
    pytest.param(Case(lambda _: ["--processor", "echo"], check_echo), id="echo"),
    pytest.param(
        Case(http_args, check_http, uses_http=True, env={"STREAM_SERVICE_HTTP_API_KEY": API_KEY}),
        id="http against a local chat-completions server",
    ),
    pytest.param(
        Case(
            lambda _: [
                "--processor",
                "python:tests.fixtures.readme_plugin:KeywordTagger",
                "--set",
                TAGGER_OPTIONS,
            ],
            check_keyword_tagger,
        ),
        id="python: batch plugin class (README KeywordTagger)",
    ),
    pytest.param(
        Case(lambda _: ["--processor", "python:tests.fixtures.readme_plugin:shout"], check_shout),
        id="python: async per-request plugin (README shout)",
    ),
]


async def run_until_answered(
    bootstrap: str, topics: Topics, args: Sequence[str], total: int, env: dict[str, str] | None = None
) -> tuple[Outputs, ServiceProcess]:
    """Run the service until ``total`` inputs are answered, then stop it (it must exit 0)."""
    service = await ServiceProcess(bootstrap, topics, *args, env=env).start()
    try:
        async with Outputs(bootstrap, topics) as out:
            await out.until(out.answered(total), ANSWER_TIMEOUT_S, f"all {total} inputs answered")
            await out.settle()
    finally:
        code = await service.stop()
    assert code == 0, service.stderr.decode()[-3000:]
    return out, service


@pytest.mark.parametrize("case", CASES)
async def test_processor_answers_every_request(kafka_bootstrap: str, case: Case) -> None:
    """Each processor kind answers every request once with a result of its own shape, and nothing errs."""
    topics = await fresh_topics(kafka_bootstrap, input_partitions=PARTITIONS)
    await produce(kafka_bootstrap, topics.input, workload(REQUESTS, seed=17).records)
    offsets = await input_ranges(kafka_bootstrap, topics.input, PARTITIONS, REQUESTS)

    async with FakeOpenAI() as server:
        out, service = await run_until_answered(
            kafka_bootstrap, topics, case.args(server), REQUESTS, env=case.env
        )

    assert_all_answered(out, offsets)
    assert out.duplicates() == 0
    errors = [o.value for o in out.items if o.topic == topics.errors]
    assert not errors, errors[:3]
    results = [o.value for o in out.items if o.topic == topics.results]
    assert sorted(r["id"] for r in results) == sorted(f"req-{i}" for i in range(REQUESTS))
    for result in results:
        assert result["success"] is True and result["cached"] is False, result
        assert result["profile_name"] == PROFILE
        case.check(result)

    if case.uses_http:
        system_prompt = ProfileRegistry().get_profile(PROFILE).system_prompt
        assert len(server.requests) == REQUESTS
        for received in server.requests:
            messages = received.json["messages"]
            assert messages[0] == {"role": "system", "content": system_prompt}
            assert messages[1]["role"] == "user" and messages[1]["content"].startswith(PROMPT)
            assert received.json["model"] == HTTP_MODEL
            assert received.headers["authorization"] == f"Bearer {API_KEY}"
        started = next(line for line in service.lines if line.get("event") == "service.started")
        assert started["config"]["processor"]["http"]["api_key"] == "***"
        logged = "\n".join(json.dumps(line) for line in service.lines) + service.stderr.decode()
        assert API_KEY not in logged


# ------------------------------------------------------------------------------------------ http retries

RETRIED_REQUESTS = 40


async def test_http_failures_are_retried_by_the_engine_one_post_per_attempt(kafka_bootstrap: str) -> None:
    """The engine alone retries 429s (date Retry-After) and 503s: all answered, one POST per attempt."""
    topics = await fresh_topics(kafka_bootstrap, input_partitions=PARTITIONS)
    await produce(kafka_bootstrap, topics.input, workload(RETRIED_REQUESTS, seed=29).records)
    offsets = await input_ranges(kafka_bootstrap, topics.input, PARTITIONS, RETRIED_REQUESTS)
    # A date already past: the hint is 0 s, so the test does not wait on the endpoint's clock.
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)
    failures = [Reply(status=429, headers={"Retry-After": past})] * 3 + [Reply(status=503)] * 3
    args = (
        "--set", f"retry.max_attempts={len(failures) + 1}",  # no request can run out of attempts
        "--set", "retry.initial_backoff_s=0.01", "--set", "retry.max_backoff_s=0.05",
    )  # fmt: skip

    async with FakeOpenAI() as server:
        server.script(*failures)
        out, service = await run_until_answered(
            kafka_bootstrap, topics, [*http_args(server), *args], RETRIED_REQUESTS
        )

    assert_all_answered(out, offsets)
    assert out.duplicates() == 0
    results = [o.value for o in out.items if o.topic == topics.results]
    assert len(results) == RETRIED_REQUESTS and all(r["success"] for r in results)
    for result in results:
        check_http(result)
    assert len(server.requests) == RETRIED_REQUESTS + len(failures)


# ------------------------------------------------------------------------------------------------ cache

DISTINCT_PROMPTS = 10
REPEATS = 200


def request(i: int, prompt: str, *, tenant: str = "default", profile: str = PROFILE) -> tuple[bytes, bytes]:
    body = {"id": f"req-{i}", "prompt": prompt, "tenant": tenant, "profile_name": profile}
    return f"r{i}".encode(), json.dumps(body).encode()


def scrape(port: int) -> dict[str, float]:
    """The service's /metrics as sample name{labels} -> value (label sets sorted by name)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def by_id(items: list[Output], topic: str) -> dict[str, dict[str, Any]]:
    return {o.value["id"]: o.value for o in items if o.topic == topic}


async def test_duplicate_prompts_are_answered_from_the_cache(kafka_bootstrap: str) -> None:
    """Repeats of a (prompt, tenant, profile) already answered come back cached: true with the same
    content, without calling the model again; another tenant or profile is not served from the cache."""
    topics = await fresh_topics(kafka_bootstrap, input_partitions=PARTITIONS)
    prompts = [f"Cache probe {uuid.uuid4().hex[:8]} number {n}" for n in range(DISTINCT_PROMPTS)]
    first = [request(n, p) for n, p in enumerate(prompts)]
    repeats = [request(DISTINCT_PROMPTS + n, prompts[n % DISTINCT_PROMPTS]) for n in range(REPEATS)]
    base = DISTINCT_PROMPTS + REPEATS
    other_tenant = [request(base + n, p, tenant="other") for n, p in enumerate(prompts)]
    base += DISTINCT_PROMPTS
    other_profile = [request(base + n, p, profile="tech_startup") for n, p in enumerate(prompts)]
    total = base + DISTINCT_PROMPTS

    async with FakeOpenAI() as server:
        service = await ServiceProcess(kafka_bootstrap, topics, *http_args(server)).start()
        try:
            async with Outputs(kafka_bootstrap, topics) as out:
                # The first answers must be in the cache before their repeats arrive; repeats that
                # arrive while the first one still runs are coalesced instead (also cached: true).
                await produce(kafka_bootstrap, topics.input, first)
                await out.until(out.answered(DISTINCT_PROMPTS), ANSWER_TIMEOUT_S, "the first answers")
                await produce(kafka_bootstrap, topics.input, repeats + other_tenant + other_profile)
                await out.until(out.answered(total), ANSWER_TIMEOUT_S, "all inputs answered")
                port = service.ops_port()
                assert port is not None
                metrics = await asyncio.to_thread(scrape, port)
        finally:
            code = await service.stop()
    assert code == 0, service.stderr.decode()[-3000:]

    offsets = await input_ranges(kafka_bootstrap, topics.input, PARTITIONS, total)
    assert_all_answered(out, offsets)
    results = by_id(out.items, topics.results)
    assert len(results) == total
    originals = {prompts[n]: results[f"req-{n}"] for n in range(DISTINCT_PROMPTS)}
    assert not any(r["cached"] for r in originals.values())
    for n in range(REPEATS):
        result = results[f"req-{DISTINCT_PROMPTS + n}"]
        original = originals[prompts[n % DISTINCT_PROMPTS]]
        assert result["cached"] is True, result
        assert result["content"] == original["content"]
        assert result["hrv_vector"] == original["hrv_vector"]
    for n in range(DISTINCT_PROMPTS * 2):
        assert results[f"req-{DISTINCT_PROMPTS + REPEATS + n}"]["cached"] is False

    # The model ran once per distinct (prompt, tenant, profile), not once per request.
    assert len(server.requests) == 3 * DISTINCT_PROMPTS < total
    assert metrics["stream_service_cache_hits_total"] == REPEATS


# ------------------------------------------------------------------------------------------------ quota

PER_WINDOW = 40


async def test_tenant_quota_rejects_with_typed_errors_and_drops_nothing(kafka_bootstrap: str) -> None:
    """With limits.tenant_max_per_window set, each tenant gets that many results and every request over
    it becomes a rate_limit ErrorRecord naming the setting: every input is answered, none silently dropped."""
    topics = await fresh_topics(kafka_bootstrap, input_partitions=PARTITIONS)
    wl = workload(REQUESTS, tenants=("acme", "globex"), seed=23)
    await produce(kafka_bootstrap, topics.input, wl.records)
    offsets = await input_ranges(kafka_bootstrap, topics.input, PARTITIONS, REQUESTS)
    args = (
        "--processor", "echo",
        # One window longer than the test: the quota must not reset midway.
        "--set", f"limits.tenant_max_per_window={PER_WINDOW}", "--set", "limits.window_s=3600",
    )  # fmt: skip

    out, service = await run_until_answered(kafka_bootstrap, topics, args, REQUESTS)

    assert_all_answered(out, offsets)
    assert out.duplicates() == 0
    results = [o.value for o in out.items if o.topic == topics.results]
    errors = [o.value for o in out.items if o.topic == topics.errors]
    assert Counter(r["tenant"] for r in results) == {tenant: PER_WINDOW for tenant in wl.tenants}
    assert Counter(e["tenant"] for e in errors) == {t: n - PER_WINDOW for t, n in wl.tenants.items()}
    for error in errors:
        assert error["error_type"] == "rate_limit", error
        assert f"limits.tenant_max_per_window={PER_WINDOW}" in error["error"], error
        assert error["id"] is not None and error["success"] is False
    failed = [line for line in service.lines if line.get("event") == "request.failed"]
    assert Counter(line["error_type"] for line in failed) == {"rate_limit": len(errors)}
