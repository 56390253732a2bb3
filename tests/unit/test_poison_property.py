"""The class, not the cases: no record, no processor behaviour, stops the engine or stalls a partition.

Hypothesis drives the engine (real steps, fake clients) through arbitrary records (random bytes,
tombstones; random, duplicate and null headers; JSON and MessagePack with odd types; fields at
and over every limit) and arbitrary processor behaviour (raise, hang, unencodable, huge or
malformed outputs). For every example:

- the engine never raises;
- every input gets exactly one output, and it validates against ``schemas/``;
- committed offsets only advance, and reach the end of every partition;
- with ``ordering = key`` (or ``partition``), the outputs of a key (or partition) follow offset order;
- with tracing on (half the examples), whatever ``traceparent``/``tracestate`` headers hold: every
  input's request span ends, and its output carries that span's ``traceparent``.

The number of examples comes from the hypothesis profile: ``ci`` (the default) or ``nightly``
(``HYPOTHESIS_PROFILE=nightly``, see ``tests/conftest.py`` and the README).
"""

from __future__ import annotations

import asyncio
import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stream_service.config import (
    BatchSettings,
    CacheSettings,
    DeliverySettings,
    ExecutorSettings,
    RetrySettings,
    TracingSettings,
)
from stream_service.processors.cache import ResultCache
from stream_service.processors.loader import ProcessorSpec, load_processor
from tests.engine_kit import TP0, TP1, Harness, config, running
from tests.fakes import FakeProducer
from tests.fixtures import chaos
from tests.otel_kit import TRACEPARENT, Spans, in_memory_tracing

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
VALIDATORS = {
    topic: jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))
    for topic, name in (("results", "result.schema.json"), ("errors", "error_record.schema.json"))
}
EXAMPLE_BUDGET_S = 30.0  # one example's engine must have answered everything by then
MAX_REQUEST_BYTES = 256 * 1024  # the fake producer's client check (kafka.producer_max_request_size)
BROKER_MAX_BYTES = 64 * 1024  # the fake broker's max.message.bytes

BEHAVIOURS = [
    "ok", "raise", "hang", "object", "scalar", "lambda", "surrogate", "huge", "none", "bytes",
    "nan", "bigint", "badkey", "hrv",
]  # fmt: skip

# -------------------------------------------------------------------------- strategies


def text_around(limit: int) -> st.SearchStrategy[str]:
    """Text of any length up to a bit over ``limit``, weighted to the edges."""
    return st.one_of(
        st.text(max_size=8),
        st.integers(limit - 1, limit + 1).map(lambda n: "t" * max(0, n)),
    )


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_data = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
msgpack_odd = st.one_of(
    json_scalars,
    st.binary(max_size=8),
    st.builds(msgspec.msgpack.Ext, st.integers(0, 127), st.binary(max_size=4)),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.dictionaries(st.integers(-3, 3), st.integers(), max_size=2),
)


@st.composite
def prompts(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(BEHAVIOURS))
    if word == "huge":
        sizes = [10, BROKER_MAX_BYTES // 2, BROKER_MAX_BYTES * 2, MAX_REQUEST_BYTES * 2]
        return f"huge:{draw(st.sampled_from(sizes))}"
    return f"{word}:{draw(st.text(max_size=10))}"


@st.composite
def request_dicts(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if draw(st.integers(0, 9)):  # mostly with an id
        fields["id"] = draw(st.one_of(text_around(256), values))
    fields["prompt"] = draw(st.one_of(prompts(), prompts(), values))
    for name in ("tenant", "profile_name"):
        if draw(st.booleans()):
            fields[name] = draw(st.one_of(text_around(256), values))
    if draw(st.booleans()):
        fields["priority"] = draw(st.one_of(st.integers(-(2**70), 2**70), values))
    if draw(st.booleans()):
        fields["metadata"] = draw(st.dictionaries(st.text(max_size=5), values, max_size=3) | values)
    if draw(st.booleans()):
        fields[draw(st.text(max_size=5))] = draw(values)  # unknown fields are ignored
    return fields


def safe_msgpack(fields: dict[str, Any]) -> bytes:
    try:
        return msgspec.msgpack.encode(fields)
    except (TypeError, OverflowError, msgspec.EncodeError):
        return msgspec.msgpack.encode({"id": "unencodable", "prompt": "ok:"})


content_types = st.sampled_from(
    [b"application/json", b"application/msgpack", b"application/x-msgpack", b"text/plain", b"", b"\xff\xfe"]
)
trace_context = st.one_of(
    st.sampled_from(
        [
            TRACEPARENT,
            TRACEPARENT.upper(),
            TRACEPARENT + b"-more",
            b"ff" + TRACEPARENT[2:],
            b"00-" + b"0" * 32 + TRACEPARENT[35:],
            TRACEPARENT[:-1],
            TRACEPARENT + b"\x00" * 600,  # over the traceparent limit
            b"vendor=abc,other=x",
            b"k=v,k=w",
            b"a=b," * 3000,  # over the tracestate limit
        ]
    ),
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogateescape")),
)


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
    """(value, key, headers) of one input record."""
    kind = draw(st.sampled_from(["valid", "valid", "valid", "json", "msgpack", "bytes", "null", "truncated"]))
    headers: list[tuple[str, bytes | None]] = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "content-type",
                        "Content-Type",
                        "x",
                        "\udcffodd",
                        "traceparent",
                        "tracestate",
                        "Traceparent",
                    ]
                ),
                st.one_of(st.none(), content_types, st.binary(max_size=8), trace_context),
            ),
            max_size=4,
        )
    )
    value: bytes | None
    if kind == "valid":  # a well-formed request: what the processor does with it is the test
        fields = {"id": draw(st.text(min_size=1, max_size=12)), "prompt": draw(prompts())}
        if draw(st.booleans()):
            fields["metadata"] = draw(st.dictionaries(st.text(max_size=5), json_scalars, max_size=3))
        encode = draw(st.sampled_from([msgspec.json.encode, safe_msgpack]))
        value = encode(fields)
        if encode is safe_msgpack:
            headers.append(("content-type", b"application/msgpack"))
        else:
            headers.append(("content-type", b"application/json"))
    elif kind == "json":
        value = msgspec.json.encode(draw(request_dicts(json_data)))
        if draw(st.booleans()):
            headers.append(("content-type", b"application/json"))
    elif kind == "msgpack":
        value = safe_msgpack(draw(request_dicts(msgpack_odd)))
        headers.append(("content-type", b"application/msgpack"))
    elif kind == "bytes":
        value = draw(st.binary(max_size=64))
    elif kind == "null":
        value = None
    else:
        whole = msgspec.json.encode(draw(request_dicts(json_data)))
        value = whole[: draw(st.integers(0, max(0, len(whole) - 1)))]
    key = draw(st.sampled_from([None, b"k1", b"k2", b"k3"]))
    return value, key, headers


@st.composite
def setups(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "ordering": draw(st.sampled_from(["key", "partition", "unordered"])),
        "encoding": draw(st.sampled_from(["json", "msgpack"])),
        "cache": draw(st.booleans()),
        "batching": draw(st.booleans()),
        "batch_size": draw(st.sampled_from([1, 4, 64])),
        "tracing": draw(st.booleans()),
    }


# -------------------------------------------------------------------------- the property


def decode_output(topic: str, value: bytes, content_type: bytes | None) -> Any:
    if content_type == b"application/msgpack":
        return msgspec.msgpack.decode(value)
    return msgspec.json.decode(value)


async def run_example(
    setup: dict[str, Any], inputs: dict[Any, list[tuple[bytes | None, bytes | None, list[Any]]]]
) -> tuple[Harness, Spans | None]:
    cfg = config(
        batch=BatchSettings(
            max_size=setup["batch_size"], min_size=1, initial_size=setup["batch_size"], linger_ms=0.0
        ),
        executor=ExecutorSettings(
            max_in_flight=64, concurrency=256, ordering=setup["ordering"], request_timeout_s=0.05
        ),
        retry=RetrySettings(max_attempts=2, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False),
        cache=CacheSettings(enabled=setup["cache"]),
        delivery=DeliverySettings(commit_interval_s=0.01, encoding=setup["encoding"]),
        tracing=TracingSettings(enabled=setup["tracing"]),
    )
    producer = FakeProducer(
        max_size=MAX_REQUEST_BYTES,
        batching=setup["batching"],
        broker_max_size=BROKER_MAX_BYTES,
        broker_max_batch=BROKER_MAX_BYTES,
        partitions=2,
    )
    processor = load_processor(ProcessorSpec(name="python:tests.fixtures.chaos:chaos", hrv=False))
    cache = ResultCache(100, 60.0) if setup["cache"] else None
    tracing, spans = in_memory_tracing(cfg) if setup["tracing"] else (None, None)
    h = Harness(cfg, processor=processor, producer=producer, cache=cache, tracing=tracing)
    total = sum(len(recs) for recs in inputs.values())
    async with running(h, *inputs):
        for tp, recs in inputs.items():
            for value, key, headers in recs:
                h.consumer.feed_values(tp, [value], keys=[key], headers=headers)
        async with asyncio.timeout(EXAMPLE_BUDGET_S):
            await producer.wait_acked(total)
            while h.consumer.committed != {tp: len(recs) for tp, recs in inputs.items() if recs}:
                await h.consumer.wait_polls(len(h.consumer.calls) + 1)
    return h, spans


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)
@given(
    setup=setups(),
    p0=st.lists(records(), min_size=1, max_size=12),
    p1=st.lists(records(), max_size=6),
)
def test_no_record_and_no_processor_behaviour_stops_the_engine_or_loses_an_answer(
    setup: dict[str, Any], p0: list[Any], p1: list[Any]
) -> None:
    """Whatever records and processor do: one valid output per input, commits to the end, order kept."""
    chaos.misbehave()
    inputs = {TP0: p0, TP1: p1}
    h, spans = asyncio.run(run_example(setup, inputs))  # raises if any engine task raised

    by_input: dict[tuple[int, int], list[Any]] = {}
    for rec in h.producer.acked:
        partition, offset = (
            int(rec.header("source-partition") or b"-1"),
            int(rec.header("source-offset") or b"-1"),
        )
        by_input.setdefault((partition, offset), []).append(rec)
        body = decode_output(rec.topic, rec.value, rec.header("content-type"))
        event(f"output: {body.get('error_type', 'result')}" if isinstance(body, dict) else "output: ?")
        errors = sorted(VALIDATORS[rec.topic].iter_errors(body), key=str)
        assert not errors, f"{rec.topic} output does not match its schema: {errors[0].message}"
    expected = {(tp.partition, offset) for tp, recs in inputs.items() for offset in range(len(recs))}
    assert set(by_input) == expected, "every input answered, nothing else"
    assert all(len(outs) == 1 for outs in by_input.values()), "exactly one output per input"

    for tp, recs in inputs.items():
        seen = [commit[tp] for commit in h.consumer.commits if tp in commit]
        assert seen == sorted(seen), "committed offsets only advance"
        assert h.consumer.committed.get(tp, 0) == len(recs), "commits reach the end"

    if setup["ordering"] != "unordered":
        order: dict[Any, list[int]] = {}
        for rec in h.producer.acked:
            partition, offset = (
                int(rec.header("source-partition") or b""),
                int(rec.header("source-offset") or b""),
            )
            tp = TP0 if partition == 0 else TP1
            key = inputs[tp][offset][1]
            if setup["ordering"] == "key" and key is None:
                continue  # no key: nothing to keep in order
            group = (partition, key if setup["ordering"] == "key" else None)
            order.setdefault(group, []).append(offset)
        for group, offsets in order.items():
            assert offsets == sorted(offsets), f"outputs of {group} out of offset order"

    if spans is not None:
        ended = {f"{s.context.span_id:016x}": s for s in spans.requests}
        assert len(spans.requests) == len(ended) == len(expected), "every input's request span ended, once"
        for rec in h.producer.acked:
            value = rec.header("traceparent")
            assert value is not None, "with tracing on, every output carries its request span"
            _, trace_id, span_id, _ = value.decode().split("-")
            assert f"{ended[span_id].context.trace_id:032x}" == trace_id
