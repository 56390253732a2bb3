"""Tests for stream_service.tools.produce's generator: determinism, mixes, encodings, keys."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import msgspec
import pytest

from stream_service.messages import Request
from stream_service.tools.produce import BAD_KINDS, RequestGenerator


def _take(gen: RequestGenerator, n: int) -> list[tuple[bytes | None, bytes, str]]:
    return [(g.key, g.value, g.kind) for g in islice(gen, n)]


def test_same_seed_same_records() -> None:
    """Two generators with the same seed and arguments yield identical records; another seed differs."""
    kwargs = dict(tenants=["a", "b"], duplicate_ratio=0.2, bad_ratio=0.1)
    first = _take(RequestGenerator(seed=7, **kwargs), 300)  # type: ignore[arg-type]
    again = _take(RequestGenerator(seed=7, **kwargs), 300)  # type: ignore[arg-type]
    other = _take(RequestGenerator(seed=8, **kwargs), 300)  # type: ignore[arg-type]
    assert first == again
    assert first != other


def test_valid_records_decode_as_requests_with_unique_prompts() -> None:
    """Without duplicates every record is a valid Request with its own id and prompt of about the size."""
    gen = RequestGenerator(seed=1, prompt_bytes=300, profiles=["p1", "p2"], priorities=[0, 5])
    requests = [msgspec.json.decode(g.value, type=Request) for g in islice(gen, 200)]
    assert len({r.id for r in requests}) == 200
    assert len({r.prompt for r in requests}) == 200
    assert requests[0].id == "s1-000000000"
    assert all(280 <= len(r.prompt) <= 330 for r in requests)
    assert {r.profile_name for r in requests} == {"p1", "p2"}
    assert {r.priority for r in requests} == {0, 5}


def test_duplicates_reuse_prompt_tenant_and_profile_under_new_ids() -> None:
    """A duplicate repeats an earlier (prompt, tenant, profile) with a fresh id."""
    gen = RequestGenerator(seed=3, tenants=["a", "b", "c"], duplicate_ratio=0.5)
    records = list(islice(gen, 400))
    kinds = Counter(g.kind for g in records)
    assert 150 < kinds["duplicate"] < 250
    requests = [msgspec.json.decode(g.value, type=Request) for g in records]
    originals = {
        (r.prompt, r.tenant, r.profile_name)
        for r, g in zip(requests, records, strict=True)
        if g.kind == "valid"
    }
    for r, g in zip(requests, records, strict=True):
        if g.kind == "duplicate":
            assert (r.prompt, r.tenant, r.profile_name) in originals
    assert len({r.id for r in requests}) == 400


def test_bad_records_cover_every_kind_and_are_bad() -> None:
    """The bad mix contains all five kinds, each failing in its own way."""
    gen = RequestGenerator(seed=5, bad_ratio=1.0)
    records = list(islice(gen, 200))
    assert {g.kind for g in records} == set(BAD_KINDS)
    for g in records:
        if g.kind == "invalid_json":
            with pytest.raises(msgspec.DecodeError):
                msgspec.json.decode(g.value)
        elif g.kind == "wrong_schema":
            with pytest.raises(msgspec.ValidationError):
                msgspec.json.decode(g.value, type=Request)
        elif g.kind == "oversized_prompt":
            assert len(msgspec.json.decode(g.value, type=Request).prompt.encode()) > 32 * 1024
        elif g.kind == "unknown_profile":
            assert msgspec.json.decode(g.value, type=Request).profile_name == "no-such-profile"
        else:
            with pytest.raises(UnicodeDecodeError):
                g.value.decode("utf-8")


def test_tenant_weights_skew_the_mix() -> None:
    """Weights 9:1 give roughly nine times as many records to the first tenant."""
    gen = RequestGenerator(seed=2, tenants=["big", "small"], tenant_weights=[9, 1])
    counts = Counter(g.tenant for g in islice(gen, 1000))
    assert 850 < counts["big"] < 950


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("id", b"s0-000000000", id="key by id"),
        pytest.param("tenant", b"only", id="key by tenant"),
        pytest.param("none", None, id="no key"),
    ],
)
def test_key_modes(mode: str, expected: bytes | None) -> None:
    """--key picks the record key: the request id, the tenant, or none."""
    gen = RequestGenerator(tenants=["only"], key=mode)  # type: ignore[arg-type]
    assert next(iter(gen)).key == expected


def test_msgpack_encoding() -> None:
    """With encoding=msgpack records decode as msgpack and the content-type header says so."""
    gen = RequestGenerator(encoding="msgpack")
    assert msgspec.msgpack.decode(next(iter(gen)).value, type=Request).id == "s0-000000000"
    assert gen.headers == [("content-type", b"application/msgpack")]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"bad_ratio": 1.5}, id="ratio above one"),
        pytest.param({"tenants": ["a"], "tenant_weights": [1, 2]}, id="weights mismatch"),
        pytest.param({"tenants": []}, id="no tenants"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, object]) -> None:
    """Impossible arguments raise ValueError before anything is sent."""
    with pytest.raises(ValueError):
        RequestGenerator(**kwargs)  # type: ignore[arg-type]
