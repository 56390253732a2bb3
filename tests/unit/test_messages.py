"""The wire contract: every message survives encode -> decode in both encodings, and evolves safely."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.errors import ErrorType
from stream_service.messages import HRV_DIMENSIONS, ErrorRecord, Request, Result
from stream_service.pipeline.decode import ENCODERS, JSON_ENCODER, MSGPACK_ENCODER
from stream_service.wire import CONTENT_TYPES, Encoding

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
JSON_SCALARS = st.none() | st.booleans() | INT64 | FINITE_FLOATS | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
METADATA = st.dictionaries(st.text(max_size=16), JSON_VALUES, max_size=5)
REQUEST_IDS = st.text(min_size=1, max_size=256)
HRV_VECTORS = st.lists(
    st.floats(min_value=0.0, max_value=1.0), min_size=HRV_DIMENSIONS, max_size=HRV_DIMENSIONS
)

REQUESTS = st.builds(
    Request,
    id=REQUEST_IDS,
    prompt=st.text(),
    tenant=st.text(max_size=32),
    profile_name=st.text(max_size=32),
    priority=INT64,
    metadata=METADATA,
)
RESULTS = st.builds(
    Result,
    id=REQUEST_IDS,
    success=st.just(True),
    content=st.text(),
    hrv_vector=st.none() | HRV_VECTORS,
    processing_time=st.floats(min_value=0.0, max_value=1e6),
    tenant=st.text(max_size=32),
    profile_name=st.text(max_size=32),
    metadata=METADATA,
    cached=st.booleans(),
    attempts=st.integers(min_value=1, max_value=100),
)
ERROR_RECORDS = st.builds(
    ErrorRecord,
    id=st.none() | REQUEST_IDS,
    error=st.text(),
    error_type=st.sampled_from(get_args(ErrorType)),
    attempts=st.integers(min_value=0, max_value=100),
    processing_time=st.floats(min_value=0.0, max_value=1e6),
    tenant=st.none() | st.text(max_size=32),
    profile_name=st.none() | st.text(max_size=32),
    metadata=METADATA,
    payload=st.none() | st.text(),
    payload_encoding=st.none() | st.sampled_from(["utf-8", "base64"]),
)

DECODERS: dict[str, Any] = {
    "json": {cls: msgspec.json.Decoder(cls) for cls in (Request, Result, ErrorRecord)},
    "msgpack": {cls: msgspec.msgpack.Decoder(cls) for cls in (Request, Result, ErrorRecord)},
}


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@given(request=REQUESTS)
def test_request_round_trips(encoding: Encoding, request: Request) -> None:
    """A Request decodes to an equal Request after encoding, in JSON and in MessagePack."""
    assert DECODERS[encoding][Request].decode(ENCODERS[encoding].encode(request)) == request


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@given(result=RESULTS)
def test_result_round_trips(encoding: Encoding, result: Result) -> None:
    """A Result decodes to an equal Result after encoding, in JSON and in MessagePack."""
    assert DECODERS[encoding][Result].decode(ENCODERS[encoding].encode(result)) == result


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@given(record=ERROR_RECORDS)
def test_error_record_round_trips(encoding: Encoding, record: ErrorRecord) -> None:
    """An ErrorRecord decodes to an equal ErrorRecord after encoding, in JSON and in MessagePack."""
    decoded = DECODERS[encoding][ErrorRecord].decode(ENCODERS[encoding].encode(record))
    assert decoded == record


def test_inbound_request_ignores_unknown_fields() -> None:
    """A newer upstream may add fields: a Request with unknown fields still decodes."""
    raw = b'{"id": "r1", "prompt": "hi", "added_in_v2": {"x": 1}}'
    assert msgspec.json.decode(raw, type=Request) == Request(id="r1", prompt="hi")


def test_request_defaults() -> None:
    """Only id and prompt are required; the rest have the documented defaults."""
    request = msgspec.json.decode(b'{"id": "r1", "prompt": "hi"}', type=Request)
    assert (request.tenant, request.profile_name, request.priority, request.metadata) == (
        "default",
        "neutral_professional",
        0,
        {},
    )


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param([0.5] * (HRV_DIMENSIONS - 1), id="too short"),
        pytest.param([0.5] * (HRV_DIMENSIONS + 1), id="too long"),
        pytest.param([1.5] + [0.5] * (HRV_DIMENSIONS - 1), id="value above 1"),
    ],
)
def test_result_rejects_malformed_hrv_vector(vector: list[float]) -> None:
    """A Result's hrv_vector must hold exactly eight values in [0, 1]."""
    raw = {
        "id": "r",
        "content": "c",
        "processing_time": 0.1,
        "tenant": "t",
        "profile_name": "p",
        "hrv_vector": vector,
    }
    with pytest.raises(msgspec.ValidationError, match=r"\$\.hrv_vector"):
        msgspec.convert(raw, Result)


def test_error_record_without_id_is_valid() -> None:
    """An ErrorRecord for undecodable input has a null id and still encodes."""
    record = ErrorRecord(id=None, error="record value is null (a tombstone)", error_type="validation")
    assert msgspec.json.decode(JSON_ENCODER.encode(record))["id"] is None


def test_content_types_name_both_encodings() -> None:
    """Each encoding the service writes has the content-type header value it advertises."""
    assert CONTENT_TYPES == {"json": "application/json", "msgpack": "application/msgpack"}
    assert set(ENCODERS) == set(CONTENT_TYPES)
    assert ENCODERS["msgpack"] is MSGPACK_ENCODER
