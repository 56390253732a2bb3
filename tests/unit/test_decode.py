"""RequestDecoder: valid records become Requests, every bad one a DecodeFailure, and it never raises."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_service.messages import ErrorRecord, Request
from stream_service.pipeline.decode import (
    JSON_ENCODER,
    MSGPACK_ENCODER,
    DecodeFailure,
    RequestDecoder,
)
from tests.unit.test_messages import JSON_VALUES, REQUESTS

MAX_PROMPT_BYTES = 64
MAX_MESSAGE_BYTES = 1024
PROFILES = frozenset({"neutral_professional", "warm_supportive"})
CONTENT_TYPES = [
    None,
    "application/json",
    "application/msgpack",
    "application/x-msgpack",
    b"application/json",
    "application/json; charset=utf-8",
    "text/plain",
]


def make_decoder(**overrides: object) -> RequestDecoder:
    options: dict[str, object] = {
        "max_prompt_bytes": MAX_PROMPT_BYTES,
        "max_message_bytes": MAX_MESSAGE_BYTES,
        "default_encoding": "json",
        "known_profiles": PROFILES,
    }
    options.update(overrides)
    return RequestDecoder(**options)  # type: ignore[arg-type]


def failure(result: Request | DecodeFailure) -> DecodeFailure:
    assert isinstance(result, DecodeFailure), f"expected a DecodeFailure, got {result!r}"
    return result


def original_bytes(result: DecodeFailure) -> bytes:
    assert result.payload is not None
    if result.payload_encoding == "base64":
        return base64.b64decode(result.payload)
    assert result.payload_encoding == "utf-8"
    return result.payload.encode()


# ------------------------------------------------------------------------------------ properties


@given(request=REQUESTS)
@pytest.mark.parametrize("content_type", ["application/json", "application/msgpack"])
def test_valid_requests_decode_to_themselves(content_type: str, request: Request) -> None:
    """Any valid Request, encoded in either encoding, decodes back to an equal Request."""
    encoder = JSON_ENCODER if content_type == "application/json" else MSGPACK_ENCODER
    decoder = make_decoder(max_prompt_bytes=10**9, max_message_bytes=10**9, known_profiles=None)
    assert decoder.decode(encoder.encode(request), content_type) == request


@given(value=st.binary(max_size=2048), content_type=st.sampled_from(CONTENT_TYPES))
def test_arbitrary_bytes_never_raise(value: bytes, content_type: str | bytes | None) -> None:
    """Arbitrary bytes under any content type give a Request or a DecodeFailure, never an exception."""
    result = make_decoder().decode(value, content_type)
    assert isinstance(result, Request | DecodeFailure)
    if isinstance(result, DecodeFailure) and result.payload is not None:
        assert original_bytes(result) == value


FIELD_NAMES = st.sampled_from(["id", "prompt", "tenant", "profile_name", "priority", "metadata"]) | st.text(
    max_size=8
)


@given(document=st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=8))
def test_arbitrary_json_objects_never_raise(document: dict[str, object]) -> None:
    """Any JSON object (right fields, wrong types, strangers) gives a Request or a well-formed failure."""
    raw = json.dumps(document).encode()
    result = make_decoder().decode(raw, "application/json")
    if isinstance(result, DecodeFailure):
        assert result.error_type in ("validation", "profile")
        msgspec.json.encode(result.to_error_record())  # publishable as it stands
    else:
        assert isinstance(result, Request)


@given(document=st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=8))
def test_arbitrary_msgpack_maps_never_raise(document: dict[str, object]) -> None:
    """Any MessagePack map gives a Request or a DecodeFailure whose error record is publishable."""
    result = make_decoder().decode(MSGPACK_ENCODER.encode(document), "application/msgpack")
    if isinstance(result, DecodeFailure):
        msgspec.json.encode(result.to_error_record())


# ------------------------------------------------------------------------------ each bad input


@pytest.mark.parametrize(
    ("value", "content_type", "expected_in_message"),
    [
        pytest.param(b'{"id": "r1", "prompt": ', None, "not valid JSON", id="invalid JSON"),
        pytest.param(b"\xc1", "application/msgpack", "not valid MessagePack", id="invalid msgpack"),
        pytest.param(b'{"prompt": "hi", "tenant": "acme"}', None, "`id`", id="missing id"),
        pytest.param(b'{"id": "r1", "tenant": "acme"}', None, "`prompt`", id="missing prompt"),
        pytest.param(
            b'{"id": "r1", "prompt": "hi", "priority": "high"}', None, "$.priority", id="wrong type"
        ),
        pytest.param(b'{"id": "", "prompt": "hi"}', None, "$.id", id="empty id"),
        pytest.param(json.dumps({"id": "x" * 257, "prompt": "hi"}).encode(), None, "$.id", id="id too long"),
        pytest.param(b'["r1", "hi"]', None, "Expected `object`", id="not an object"),
        pytest.param(
            b'{"id": "r1", "prompt": "hi"}', "text/plain", "unsupported content-type", id="unknown type"
        ),
    ],
)
def test_bad_input_is_a_validation_failure_carrying_the_payload(
    value: bytes, content_type: str | None, expected_in_message: str
) -> None:
    """Each class of undecodable or invalid record is a validation failure that names the problem."""
    result = failure(make_decoder().decode(value, content_type))
    assert result.error_type == "validation"
    assert expected_in_message in result.message
    assert original_bytes(result) == value


def test_validation_failure_salvages_id_tenant_and_metadata() -> None:
    """When the record parses, the failure still says whose request it was."""
    raw = b'{"id": "r1", "prompt": "hi", "tenant": "acme", "priority": "high", "metadata": {"trace": "t1"}}'
    result = failure(make_decoder().decode(raw, None))
    assert (result.request_id, result.tenant, result.metadata) == ("r1", "acme", {"trace": "t1"})


def test_salvage_keeps_only_usable_values() -> None:
    """An id that is not a valid id, or metadata that is not an object, is not carried over."""
    raw = json.dumps({"id": "x" * 257, "prompt": "hi", "tenant": 7, "metadata": [1]}).encode()
    result = failure(make_decoder().decode(raw, None))
    assert (result.request_id, result.tenant, result.metadata) == (None, None, {})


def test_missing_tenant_is_reported_as_the_default_tenant() -> None:
    """A parseable request without a tenant belongs to the default tenant, as a valid one would."""
    result = failure(make_decoder().decode(b'{"id": "r1"}', None))
    assert (result.request_id, result.tenant) == ("r1", "default")


def test_undecodable_input_salvages_nothing() -> None:
    """Malformed bytes carry no id or tenant, only the payload."""
    result = failure(make_decoder().decode(b'{"id": "r1", ', None))
    assert (result.request_id, result.tenant) == (None, None)


def test_null_value_is_rejected() -> None:
    """A tombstone (null value) is a validation failure with nothing to carry."""
    result = failure(make_decoder().decode(None, None))
    assert result.error_type == "validation"
    assert result.message == "record value is null (a tombstone)"
    assert result.payload is None


def test_non_utf8_payload_is_base64() -> None:
    """Bytes that are not UTF-8 travel in the failure as base64."""
    value = b"\xff\xfe\x00garbage"
    result = failure(make_decoder().decode(value, None))
    assert result.payload_encoding == "base64"
    assert original_bytes(result) == value


def test_oversized_message_is_rejected_without_its_payload() -> None:
    """A record over limits.max_message_bytes is rejected by size, and not echoed back."""
    value = json.dumps({"id": "r1", "prompt": "p", "metadata": {"pad": "x" * MAX_MESSAGE_BYTES}}).encode()
    result = failure(make_decoder().decode(value, None))
    assert (
        result.message
        == f"record value is {len(value)} bytes; limits.max_message_bytes is {MAX_MESSAGE_BYTES}"
    )
    assert (result.payload, result.request_id) == (None, "r1")


@pytest.mark.parametrize(
    ("prompt", "accepted"),
    [
        pytest.param("é" * (MAX_PROMPT_BYTES // 2), True, id="at the limit in UTF-8 bytes"),
        pytest.param("é" * (MAX_PROMPT_BYTES // 2 + 1), False, id="one character over in UTF-8 bytes"),
        pytest.param("a" * MAX_PROMPT_BYTES, True, id="ascii at the limit"),
        pytest.param("\n" * MAX_PROMPT_BYTES, True, id="escapes longer than the text"),
    ],
)
def test_prompt_limit_counts_utf8_bytes(prompt: str, accepted: bool) -> None:
    """limits.max_prompt_bytes bounds the prompt's UTF-8 size, not its characters or JSON form."""
    value = json.dumps({"id": "r1", "prompt": prompt}).encode()
    result = make_decoder().decode(value, None)
    if accepted:
        assert isinstance(result, Request)
    else:
        result = failure(result)
        assert "limits.max_prompt_bytes" in result.message
        assert result.error_type == "validation"
        assert original_bytes(result) == value


def test_unknown_profile_lists_known_profiles() -> None:
    """A profile the processor does not know is a profile error listing the known ones."""
    raw = b'{"id": "r1", "prompt": "hi", "tenant": "acme", "profile_name": "pirate"}'
    result = failure(make_decoder().decode(raw, None))
    assert result.error_type == "profile"
    assert result.message == "unknown profile 'pirate'; known profiles: neutral_professional, warm_supportive"
    assert (result.request_id, result.tenant, result.profile_name, result.payload) == (
        "r1",
        "acme",
        "pirate",
        None,
    )


def test_profiles_are_not_checked_without_a_list() -> None:
    """With known_profiles None, any profile name is accepted (the processor decides)."""
    raw = b'{"id": "r1", "prompt": "hi", "profile_name": "pirate"}'
    assert isinstance(make_decoder(known_profiles=None).decode(raw, None), Request)


def test_unknown_fields_are_ignored() -> None:
    """Fields this version does not know are ignored, so newer producers keep working."""
    raw = b'{"id": "r1", "prompt": "hi", "new_field": [1, 2], "tenant": "acme"}'
    assert make_decoder().decode(raw, None) == Request(id="r1", prompt="hi", tenant="acme")


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/msgpack", id="msgpack"),
        pytest.param("application/x-msgpack", id="x-msgpack"),
        pytest.param(b"application/msgpack", id="bytes header"),
        pytest.param("Application/MsgPack; v=1", id="case and parameters"),
    ],
)
def test_content_type_header_selects_msgpack(content_type: str | bytes) -> None:
    """The content-type header chooses MessagePack whatever the default encoding."""
    value = MSGPACK_ENCODER.encode(Request(id="r1", prompt="hi"))
    assert make_decoder(default_encoding="json").decode(value, content_type) == Request(id="r1", prompt="hi")


def test_absent_content_type_uses_default_encoding() -> None:
    """Without a content-type header the configured default encoding is used."""
    value = MSGPACK_ENCODER.encode(Request(id="r1", prompt="hi"))
    assert make_decoder(default_encoding="msgpack").decode(value, None) == Request(id="r1", prompt="hi")
    assert failure(make_decoder(default_encoding="json").decode(value, None)).error_type == "validation"


def test_large_payload_is_left_out_of_the_failure() -> None:
    """A rejected payload over max_payload_bytes is not copied into the error record."""
    value = json.dumps({"id": "r1", "prompt": 5, "pad": "x" * 200}).encode()
    result = failure(make_decoder(max_payload_bytes=100).decode(value, None))
    assert result.payload is None
    assert "payload not included: over 100 bytes" in result.message
    assert result.request_id == "r1"


def test_wrong_value_type_never_raises() -> None:
    """Even a value of the wrong Python type comes back as a failure, not an exception."""
    result = failure(make_decoder().decode(12, None))  # type: ignore[arg-type]
    assert result.error_type == "validation"
    assert result.message.startswith("record could not be decoded: TypeError")


def test_failure_becomes_an_error_record() -> None:
    """to_error_record carries everything the failure knows into the published ErrorRecord."""
    raw = b'{"id": "r1", "prompt": "hi", "tenant": "acme", "priority": "high"}'
    record = failure(make_decoder().decode(raw, None)).to_error_record()
    assert record == ErrorRecord(
        id="r1",
        error="invalid request: Expected `int`, got `str` - at `$.priority`",
        error_type="validation",
        tenant="acme",
        payload=raw.decode(),
        payload_encoding="utf-8",
    )
    assert record.attempts == 0
