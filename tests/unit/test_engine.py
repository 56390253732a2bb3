"""End-to-end tests of stream_service.engine with a fake consumer, producer and processor
(the harness is in ``tests/engine_kit.py``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import msgspec
import pytest
from structlog.testing import capture_logs

from stream_service.config import (
    BatchSettings,
    DeliverySettings,
    ExecutorSettings,
    LimitSettings,
    ObservabilitySettings,
)
from stream_service.processors.cache import ResultCache
from tests.engine_kit import (
    TP0,
    TP1,
    Harness,
    config,
    decode_error,
    decode_result,
    not_done_within,
    req,
    running,
    settle,
)
from tests.fakes import record

# --------------------------------------------------------------------------------------------- tests


async def test_every_record_yields_exactly_one_output_with_lineage() -> None:
    """Each record, good or bad, gets exactly one acknowledged output tied to its source, then a commit."""
    h = Harness(config())
    p0 = [req(f"a{i}", f"hello {i}") for i in range(20)] + [b"not json", b'{"prompt": "no id"}']
    p1 = [req(f"b{i}", f"world {i}", tenant="beta") for i in range(12)] + [
        req("f", "fail:no"),
        req("d", "down:x"),
        req("r", "flaky:once"),
    ]
    async with running(h, TP0, TP1):
        h.consumer.feed_values(TP0, p0)
        h.consumer.feed_values(TP1, p1)
        async with asyncio.timeout(10):
            await h.producer.wait_acked(len(p0) + len(p1))
        assert await h.drain() is True

    outputs = h.outputs()
    expected = {(0, o) for o in range(len(p0))} | {(1, o) for o in range(len(p1))}
    assert set(outputs) == expected
    assert all(len(recs) == 1 for recs in outputs.values()), "exactly one output per input"
    for (partition, offset), (rec,) in outputs.items():
        assert rec.header("source-topic") == b"requests"
        assert rec.header("content-type") == b"application/json"
        raw = (p0 if partition == 0 else p1)[offset]
        if raw.startswith(b"{") and b'"id"' in raw:
            request = msgspec.json.decode(raw)
            assert rec.header("request-id") == request["id"].encode()
            assert rec.key == request["id"].encode()
    for offset in range(20):
        (rec,) = outputs[(0, offset)]
        assert rec.topic == "results"
        result = decode_result(rec)
        assert (result.id, result.content, result.tenant, result.attempts) == (
            f"a{offset}",
            f"HELLO {offset}",
            "acme",
            1,
        )
    for offset in (20, 21):
        (rec,) = outputs[(0, offset)]
        assert rec.topic == "errors"
        error = decode_error(rec)
        assert error.error_type == "validation"
        assert error.payload is not None
        assert rec.header("request-id") is None
    errors = {decode_error(outputs[(1, o)][0]).id: decode_error(outputs[(1, o)][0]) for o in (12, 13)}
    assert (errors["f"].error_type, errors["f"].attempts) == ("unknown", 1)
    assert (errors["d"].error_type, errors["d"].attempts) == ("connection", 3)
    flaky = decode_result(outputs[(1, 14)][0])
    assert (flaky.content, flaky.attempts) == ("FLAKY:ONCE", 2)

    assert h.consumer.committed == {TP0: len(p0), TP1: len(p1)}
    assert (h.ledger.tracked, h.ledger.active, h.ledger.nbytes) == (0, 0, 0)
    assert h.metric("stream_service_consumed_total") == len(p0) + len(p1)
    assert h.metric("stream_service_errors_total", {"error_type": "validation"}) == 2


ONE_PER_BATCH = BatchSettings(max_size=1, min_size=1, initial_size=1, linger_ms=0.0)


@pytest.mark.parametrize(
    ("ordering", "before_open", "before_ack", "final"),
    [
        pytest.param("key", ["b1"], ["b1", "a0"], ["b1", "a0", "a2"], id="key: a2 waits for a0, b1 does not"),
        pytest.param("partition", [], ["a0"], ["a0", "b1", "a2"], id="partition: all wait in offset order"),
        pytest.param(
            "unordered", ["b1", "a2"], ["b1", "a2", "a0"], ["b1", "a2", "a0"], id="unordered: nothing waits"
        ),
    ],
)
async def test_same_key_outputs_follow_offset_order_while_acks_are_delayed(
    ordering: str, before_open: list[str], before_ack: list[str], final: list[str]
) -> None:
    """With ordering=key, a record is not even sent until the previous same-key output is acknowledged."""
    h = Harness(config(batch=ONE_PER_BATCH, executor=ExecutorSettings(ordering=ordering)))  # type: ignore[arg-type]

    def sent() -> list[str]:
        return [(r.header("request-id") or b"").decode() for r in h.producer.attempts]

    async with running(h, TP0):
        h.producer.hold_acks()
        h.consumer.feed_values(
            TP0, [req("a0", "block:a0:slow"), req("b1", "b"), req("a2", "a")], keys=[b"A", b"B", b"A"]
        )
        async with asyncio.timeout(5):
            await h.script.started("block:a0:slow")
            await h.producer.wait_sent(len(before_open))
            await settle(h)
        assert sent() == before_open
        h.script.open("a0")
        async with asyncio.timeout(5):
            await h.producer.wait_sent(len(before_ack))
            await settle(h)
        assert sent() == before_ack
        h.producer.release_acks(reverse=True)
        async with asyncio.timeout(5):
            await h.producer.wait_acked(3)
    assert sent() == final


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed {s}") for s in range(3)])
async def test_per_key_order_holds_under_random_latency_and_reversed_acks(seed: int) -> None:
    """Under random processing times and acks released in reverse, each key's outputs follow offset order."""
    h = Harness(config(), seed=seed)
    rng = random.Random(seed)
    keys = [rng.choice([b"k1", b"k2", b"k3", b"k4"]) for _ in range(60)]
    values = [req(f"r{i}", f"jitter:{i}") for i in range(len(keys))]

    async def reverse_acks() -> None:
        while True:
            await h.producer.wait_sent(len(h.producer.attempts) + 1)
            h.producer.release_acks(reverse=True)
            h.producer.hold_acks()

    async with running(h, TP0):
        h.producer.hold_acks()
        releaser = asyncio.create_task(reverse_acks())
        h.consumer.feed_values(TP0, values, keys=keys)
        try:
            await h.producer.wait_acked(len(values))
        finally:
            releaser.cancel()
            h.producer.release_acks()
    acked_offsets = [int(r.header("source-offset") or b"") for r in h.producer.acked]
    assert sorted(acked_offsets) == list(range(len(values)))
    for key in set(keys):
        mine = [offset for offset in acked_offsets if keys[offset] == key]
        assert mine == sorted(mine), f"outputs of key {key!r} out of offset order"


async def test_revoke_drops_queued_work_and_commits_only_the_finished_prefix() -> None:
    """On revoke, queued records are dropped, the finished prefix is committed, the rest is redelivered."""
    cfg = config(
        executor=ExecutorSettings(concurrency=1, ordering="unordered"),
        delivery=DeliverySettings(commit_interval_s=0.02, drain_timeout_s=0.1),
    )
    h = Harness(cfg)
    async with running(h, TP0):
        h.consumer.feed_values(
            TP0, [req("r0", "ok"), req("r1", "block:g:1"), req("r2", "q2"), req("r3", "q3")]
        )
        await h.producer.wait_acked(1)
        await h.script.started("block:g:1")
        with capture_logs() as logs:
            await h.revoke(TP0)
        assert any(e["event"] == "rebalance.drain_timeout" for e in logs)
        assert h.consumer.commits[-1] == {TP0: 1}, "only the finished prefix"
        assert set(h.processor.calls) == {"r0", "r1"}, "queued work was dropped, not run"
        assert TP0 not in h.ledger.states
        assert (h.ledger.tracked, h.ledger.active) == (1, 1), "r1 still runs: it keeps its capacity"
        h.ledger.check()

        h.script.open("g")  # the revoked partition's in-flight work finishes late
        await h.producer.wait_acked(2)
        await settle(h)
        assert h.consumer.commits[-1] == {TP0: 1}, "a revoked partition is not committed again"
        assert (h.ledger.tracked, h.ledger.active) == (0, 0), "finished: its capacity is free"

        await h.assign(TP0)  # the partition comes back: redelivered from the committed offset
        async with asyncio.timeout(10):
            await h.producer.wait_acked(5)
    outputs = h.outputs()
    assert {offset: len(recs) for (_, offset), recs in outputs.items()} == {0: 1, 1: 2, 2: 1, 3: 1}
    assert h.consumer.committed == {TP0: 4}
    assert (h.ledger.tracked, h.ledger.active) == (0, 0)


async def test_revoke_waits_for_in_flight_work_within_the_drain_timeout() -> None:
    """Work that finishes during the revoke's drain is committed before the partition is released."""
    h = Harness(config(executor=ExecutorSettings(concurrency=1, ordering="unordered")))
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "block:g:0"), req("r1", "queued")])
        await h.script.started("block:g:0")
        revoke = asyncio.create_task(h.revoke(TP0))
        assert await not_done_within(revoke, 0.05)
        h.script.open("g")
        await revoke
    assert h.consumer.committed == {TP0: 1}
    assert set(h.processor.calls) == {"r0"}


async def test_drain_returns_once_all_work_is_published() -> None:
    """drain() waits for every acknowledgement, then commits everything and returns True."""
    h = Harness(config())
    async with running(h, TP0):
        h.producer.hold_acks()
        h.consumer.feed_values(TP0, [req(f"r{i}", f"p{i}") for i in range(5)])
        await h.producer.wait_sent(5)
        drain = asyncio.create_task(h.drain())
        assert await not_done_within(drain, 0.05)
        h.producer.release_acks()
        assert await drain is True
    assert h.consumer.committed == {TP0: 5}


async def test_drain_times_out_and_commits_only_what_finished() -> None:
    """drain() returns False when work cannot finish in time; only the finished prefix is committed."""
    h = Harness(config(batch=ONE_PER_BATCH, executor=ExecutorSettings(ordering="unordered")))
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "done"), req("r1", "block:never:1"), req("r2", "done too")])
        await h.producer.wait_acked(2)
        assert await h.drain(0.1) is False
    assert h.consumer.committed == {TP0: 1}


async def test_back_pressure_bounds_consumed_but_uncommitted_records() -> None:
    """With max_in_flight=4 and the processor stuck, only 4 records are consumed and the partition pauses."""
    h = Harness(config(executor=ExecutorSettings(max_in_flight=4, ordering="unordered")))
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req(f"r{i}", f"block:g:{i}") for i in range(20)])
        await h.script.started("block:g:3")
        await settle(h, polls=5)
        assert sum(call.returned for call in h.consumer.calls) == 4
        assert h.consumer.paused() == {TP0}
        assert h.ledger.tracked == 4
        h.script.open("g")
        async with asyncio.timeout(10):
            await h.producer.wait_acked(20)
    assert len(h.outputs()) == 20
    assert h.consumer.committed == {TP0: 20}


async def test_identical_requests_are_coalesced_and_cached() -> None:
    """Identical requests in flight share one processor call; a later one is answered from the cache."""
    h = Harness(config(executor=ExecutorSettings(ordering="unordered")), cache=ResultCache(100, 60.0))
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req(f"r{i}", "block:g:same") for i in range(3)])
        await h.script.started("block:g:same")
        await settle(h)
        h.script.open("g")
        await h.producer.wait_acked(3)
        h.consumer.feed_values(TP0, [req("r3", "block:g:same")])
        await h.producer.wait_acked(4)
    assert h.processor.calls == {"r0": 1}
    results = {r.id: r for r in map(decode_result, h.producer.acked)}
    assert [results[f"r{i}"].cached for i in range(4)] == [False, True, True, True]
    assert {r.content for r in results.values()} == {"BLOCK:G:SAME"}
    assert h.consumer.committed == {TP0: 4}


async def test_follower_on_another_partition_survives_revoke_of_the_leaders_partition() -> None:
    """A request coalesced onto an identical one from a revoked partition is still answered and committed."""
    cfg = config(
        executor=ExecutorSettings(concurrency=1, ordering="unordered"),
        delivery=DeliverySettings(commit_interval_s=0.02, drain_timeout_s=0.05),
    )
    h = Harness(cfg, cache=ResultCache(100, 60.0))
    async with running(h, TP0, TP1):
        h.consumer.feed_values(TP0, [req("busy", "block:g:busy")])
        await h.script.started("block:g:busy")  # the executor is now full
        h.consumer.feed_values(TP0, [req("leader", "same")])
        await settle(h)
        h.consumer.feed_values(TP1, [req("follower", "same")])
        await settle(h)
        await h.revoke(TP0)
        h.script.open("g")
        async with asyncio.timeout(2):
            while (1, 0) not in h.outputs():
                await h.producer.wait_acked(len(h.producer.acked) + 1)
    assert h.consumer.committed.get(TP1) == 1


async def test_revoke_waits_for_in_flight_work_next_to_a_bad_record() -> None:
    """A bad record answered at once does not make a revoke skip waiting for the partition's running work."""
    h = Harness(config(executor=ExecutorSettings(ordering="unordered")))
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req("r0", "block:g:0"), b"garbage"])
        await h.script.started("block:g:0")
        await h.producer.wait_acked(1)
        revoke = asyncio.create_task(h.revoke(TP0))
        try:
            assert await not_done_within(revoke, 0.1), "revoke returned while r0 was still running"
        finally:
            h.script.open("g")
            await revoke
    assert h.consumer.committed == {TP0: 2}


async def test_tenant_over_its_window_quota_gets_rate_limit_errors() -> None:
    """Requests beyond limits.tenant_max_per_window become rate_limit ErrorRecords; other tenants pass."""
    h = Harness(config(limits=LimitSettings(tenant_max_per_window=2, window_s=600.0)))
    values = [req(f"a{i}", "x", tenant="greedy") for i in range(4)] + [req("b0", "y", tenant="other")]
    async with running(h, TP0):
        h.consumer.feed_values(TP0, values)
        await h.producer.wait_acked(len(values))
    by_id = {
        rec.header("request-id"): (rec.topic, decode_error(rec).error_type if rec.topic == "errors" else None)
        for rec in h.producer.acked
    }
    assert Counter(topic for topic, _ in by_id.values()) == {"results": 3, "errors": 2}
    assert by_id[b"b0"] == ("results", None)
    assert {by_id[b"a2"], by_id[b"a3"]} == {("errors", "rate_limit")}
    assert h.consumer.committed == {TP0: 5}


async def test_audit_requests_logs_a_fingerprint_never_the_prompt() -> None:
    """With observability.audit_requests, each request gets a request.completed line without its prompt."""
    h = Harness(config(observability=ObservabilitySettings(metrics_port=None, audit_requests=True)))
    with capture_logs() as logs:
        async with running(h, TP0):
            h.consumer.feed_values(TP0, [req("r0", "secret prompt")])
            await h.producer.wait_acked(1)
    (line,) = [e for e in logs if e["event"] == "request.completed"]
    assert line["request_id"] == "r0"
    assert line["prompt"]["len"] == len("secret prompt")
    assert "secret prompt" not in repr(logs)


async def test_records_fetched_for_a_partition_no_longer_assigned_are_ignored() -> None:
    """Records of a partition without state (fetched before a rebalance took it) are not processed."""
    h = Harness(config())
    async with running(h, TP0):
        h.engine.intake({TP1: [record(TP1.topic, TP1.partition, 0, req("x", "stray"))]})
        h.consumer.feed_values(TP0, [req("r0", "kept")])
        await h.producer.wait_acked(1)
    assert [r.header("request-id") for r in h.producer.acked] == [b"r0"]
    assert h.ledger.tracked == 0


async def test_runs_with_metrics_disabled() -> None:
    """With metrics disabled (no-op instruments), the engine answers and commits as usual."""
    h = Harness(config(), metrics=False)
    async with running(h, TP0, TP1):
        h.consumer.feed_values(TP0, [req("r0", "a"), b"bad"])
        h.consumer.feed_values(TP1, [req("r1", "b")])
        await h.producer.wait_acked(3)
    assert h.consumer.committed == {TP0: 2, TP1: 1}
    assert list(h.registry.collect()) == []


async def test_a_refused_commit_is_counted_and_retried() -> None:
    """A commit the broker refuses counts in commit_failures_total; a later round commits the offsets."""
    h = Harness(config())
    h.consumer.fail_next_commits(1)
    async with running(h, TP0):
        h.consumer.feed_values(TP0, [req(f"a{i}", f"hello {i}") for i in range(5)])
        async with asyncio.timeout(10):
            await h.producer.wait_acked(5)
        assert await h.drain() is True
    assert h.metric("stream_service_commit_failures_total") == 1
    assert h.consumer.committed == {TP0: 5}
