"""Decode step: the bytes of one record become a :class:`Request`, or a :class:`DecodeFailure`.

Runs for every record, so the happy path is one typed msgspec decode plus two comparisons; the
work of explaining a failure (salvaging ``id``/``tenant``, copying the payload) is only done for
records that fail.
"""

from __future__ import annotations

import base64
from collections.abc import Container, Iterable
from typing import Any, Final, Literal

import msgspec

from stream_service.messages import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    ErrorRecord,
    Request,
    RequestId,
    metadata_problem,
)
from stream_service.wire import CONTENT_TYPE_ENCODINGS, Encoding

# Reusable encoders (building one per message is measurably slower).
JSON_ENCODER: Final = msgspec.json.Encoder()
MSGPACK_ENCODER: Final = msgspec.msgpack.Encoder()
ENCODERS: Final[dict[Encoding, msgspec.json.Encoder | msgspec.msgpack.Encoder]] = {
    "json": JSON_ENCODER,
    "msgpack": MSGPACK_ENCODER,
}

# An error record carries the rejected payload so its sender can see it; past this size it does
# not, so that the error record itself stays well under the producer's max request size.
DEFAULT_MAX_PAYLOAD_BYTES: Final = 64 * 1024
_DEFAULT_TENANT: Final[str] = next(f.default for f in msgspec.structs.fields(Request) if f.name == "tenant")


class DecodeFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a record is not a usable Request, and what could be salvaged from it.

    ``request_id``, ``tenant``, ``profile_name`` and ``metadata`` are filled when the record was
    parseable enough to read them (``request_id`` only when it is a valid id). ``payload`` holds
    the original bytes when the record could not be decoded or failed validation — as text when
    they are UTF-8, else base64 — unless it is over the decoder's ``max_payload_bytes`` or the
    record is over ``limits.max_message_bytes``.
    """

    error_type: Literal["validation", "profile"]
    message: str
    request_id: str | None = None
    tenant: str | None = None
    profile_name: str | None = None
    metadata: dict[str, Any] = {}
    payload: str | None = None
    payload_encoding: Literal["utf-8", "base64"] | None = None

    def to_error_record(self) -> ErrorRecord:
        """The record published to the errors topic (no attempts were made)."""
        return ErrorRecord(
            id=self.request_id,
            error=self.message,
            error_type=self.error_type,
            tenant=self.tenant,
            profile_name=self.profile_name,
            metadata=self.metadata,
            payload=self.payload,
            payload_encoding=self.payload_encoding,
        )


class _Envelope(msgspec.Struct):
    """The fields worth salvaging from an invalid request; any type is accepted here and checked later."""

    id: Any = msgspec.UNSET
    tenant: Any = msgspec.UNSET
    profile_name: Any = msgspec.UNSET
    metadata: Any = msgspec.UNSET


class _Codec:
    __slots__ = ("envelope", "name", "request")

    def __init__(self, encoding: Encoding) -> None:
        self.name = "JSON" if encoding == "json" else "MessagePack"
        self.request: msgspec.json.Decoder[Request] | msgspec.msgpack.Decoder[Request]
        self.envelope: msgspec.json.Decoder[_Envelope] | msgspec.msgpack.Decoder[_Envelope]
        if encoding == "json":
            self.request, self.envelope = msgspec.json.Decoder(Request), msgspec.json.Decoder(_Envelope)
        else:
            self.request, self.envelope = msgspec.msgpack.Decoder(Request), msgspec.msgpack.Decoder(_Envelope)


def _name(value: object) -> str | None:
    """A salvaged tenant or profile name, when it is one the schema allows."""
    return value if isinstance(value, str) and len(value) <= MAX_NAME_CHARS else None


def _payload(value: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"


class RequestDecoder:
    """Turns one record value into a :class:`Request` or a :class:`DecodeFailure`. Build it once.

    Guarantees: :meth:`decode` never raises; any exception becomes a ``validation`` failure. The
    encoding comes from the ``content-type`` header (``application/json``, ``application/msgpack``
    or ``application/x-msgpack``, parameters ignored), else ``default_encoding``.

    Rejects, as ``validation``: a null value (tombstone), a value over ``max_message_bytes``, an
    unknown content type, bytes that are not JSON/MessagePack, a request that does not match the
    schema (the message carries msgspec's path, e.g. ``$.priority``), a prompt over
    ``max_prompt_bytes`` of UTF-8. Rejects, as ``profile``: a ``profile_name`` not in
    ``known_profiles`` (not checked when that is None). Unknown fields are ignored.
    """

    __slots__ = (
        "_codecs",
        "_default",
        "_known_profiles",
        "_max_message_bytes",
        "_max_payload_bytes",
        "_max_prompt_bytes",
    )

    def __init__(
        self,
        *,
        max_prompt_bytes: int,
        max_message_bytes: int,
        default_encoding: Encoding,
        known_profiles: Container[str] | None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._max_prompt_bytes = max_prompt_bytes
        self._max_message_bytes = max_message_bytes
        self._max_payload_bytes = max_payload_bytes
        self._known_profiles = known_profiles
        by_encoding = {"json": _Codec("json"), "msgpack": _Codec("msgpack")}
        self._default = by_encoding[default_encoding]
        # Exact header values, as str and as the bytes Kafka headers carry, resolve in one lookup.
        self._codecs: dict[str | bytes, _Codec] = {"": self._default, b"": self._default}
        for content_type, encoding in CONTENT_TYPE_ENCODINGS.items():
            self._codecs[content_type] = self._codecs[content_type.encode()] = by_encoding[encoding]

    def decode(self, value: bytes | None, content_type: str | bytes | None) -> Request | DecodeFailure:
        """The Request in ``value``, or why there is none. Never raises."""
        try:
            if value is None:
                return DecodeFailure(error_type="validation", message="record value is null (a tombstone)")
            if content_type is None:
                codec: _Codec | None = self._default
            else:
                codec = self._codecs.get(content_type) or self._codec_for(content_type)
            if codec is None:
                expected = ", ".join(CONTENT_TYPE_ENCODINGS)
                shown = content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type
                return self._invalid(f"unsupported content-type {shown!r}; expected {expected}", value)
            size = len(value)
            if size > self._max_message_bytes:
                limit = self._max_message_bytes
                message = f"record value is {size} bytes; limits.max_message_bytes is {limit}"
                return self._invalid(message, value, codec, with_payload=False)
            try:
                request = codec.request.decode(value)
            except msgspec.ValidationError as exc:
                return self._invalid(f"invalid request: {exc}", value, codec)
            except msgspec.DecodeError as exc:
                return self._invalid(f"record value is not valid {codec.name}: {exc}", value)
            # The prompt's UTF-8 form is never longer than the record that carries it, so only
            # records over the limit pay for measuring it.
            if size > self._max_prompt_bytes and len(request.prompt) * 4 > self._max_prompt_bytes:
                prompt_bytes = len(request.prompt.encode("utf-8", "surrogatepass"))
                if prompt_bytes > self._max_prompt_bytes:
                    limit = self._max_prompt_bytes
                    message = f"prompt is {prompt_bytes} bytes of UTF-8; limits.max_prompt_bytes is {limit}"
                    return self._invalid(message, value, codec)
            if request.metadata and (problem := metadata_problem(request.metadata)) is not None:
                message = f"invalid request: metadata cannot be written as JSON and MessagePack: {problem}"
                return self._invalid(message, value, codec)
            if self._known_profiles is not None and request.profile_name not in self._known_profiles:
                return self._unknown_profile(request)
        except Exception as exc:  # noqa: BLE001 - the contract: one bad record never stops the pipeline
            return self._unexpected(exc, value)
        else:
            return request

    def _codec_for(self, content_type: str | bytes) -> _Codec | None:
        if isinstance(content_type, bytes):
            content_type = content_type.decode("latin-1")
        return self._codecs.get(content_type.partition(";")[0].strip().lower())

    def _invalid(
        self, message: str, value: bytes, codec: _Codec | None = None, *, with_payload: bool = True
    ) -> DecodeFailure:
        request_id, tenant, profile_name, metadata = (
            self._salvage(value, codec) if codec is not None else (None, None, None, {})
        )
        payload: str | None = None
        payload_encoding: Literal["utf-8", "base64"] | None = None
        if with_payload and len(value) <= self._max_payload_bytes:
            payload, payload_encoding = _payload(bytes(value))
        elif with_payload:
            message += f" (payload not included: over {self._max_payload_bytes} bytes)"
        return DecodeFailure(
            error_type="validation",
            message=message,
            request_id=request_id,
            tenant=tenant,
            profile_name=profile_name,
            metadata=metadata,
            payload=payload,
            payload_encoding=payload_encoding,
        )

    @staticmethod
    def _salvage(value: bytes, codec: _Codec) -> tuple[str | None, str | None, str | None, dict[str, Any]]:
        """What a lenient second decode can tell about a request that failed validation."""
        try:
            envelope = codec.envelope.decode(value)
        except msgspec.DecodeError:
            return None, None, None, {}
        request_id: RequestId | None = envelope.id if isinstance(envelope.id, str) else None
        if request_id is not None and not 1 <= len(request_id) <= MAX_ID_CHARS:
            request_id = None
        tenant = _name(envelope.tenant)
        if envelope.tenant is msgspec.UNSET:
            tenant = _DEFAULT_TENANT  # what the request would have had
        profile_name = _name(envelope.profile_name)
        metadata = envelope.metadata
        if not isinstance(metadata, dict) or metadata_problem(metadata) is not None:
            metadata = {}  # what cannot be written in both output encodings is left out
        return request_id, tenant, profile_name, metadata

    def _unknown_profile(self, request: Request) -> DecodeFailure:
        known = self._known_profiles
        names = ", ".join(sorted(known)) if isinstance(known, Iterable) else "(not listable)"
        return DecodeFailure(
            error_type="profile",
            message=f"unknown profile {request.profile_name!r}; known profiles: {names}",
            request_id=request.id,
            tenant=request.tenant,
            profile_name=request.profile_name,
            metadata=request.metadata,
        )

    def _unexpected(self, exc: Exception, value: object) -> DecodeFailure:
        message = f"record could not be decoded: {type(exc).__name__}: {exc}"
        if isinstance(value, bytes | bytearray) and len(value) <= self._max_payload_bytes:
            payload, encoding = _payload(bytes(value))
            return DecodeFailure(
                error_type="validation", message=message, payload=payload, payload_encoding=encoding
            )
        return DecodeFailure(error_type="validation", message=message)
