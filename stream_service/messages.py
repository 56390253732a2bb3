"""The wire contract: what upstream producers send and what downstream consumers receive.

Rules for evolving it: new fields get defaults; an existing field never changes type; inbound
messages never forbid unknown fields (an upstream may be newer than us).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from stream_service.errors import ErrorType

HRV_DIMENSIONS = 8

RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
HrvVector = Annotated[
    list[Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]],
    msgspec.Meta(min_length=HRV_DIMENSIONS, max_length=HRV_DIMENSIONS),
]


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One unit of work, as produced to the input topic.

    ``prompt`` is also bounded by ``limits.max_prompt_bytes`` (UTF-8), checked at decode time
    because the bound is a setting, not part of the type.
    """

    id: RequestId
    prompt: str
    tenant: str = "default"
    profile_name: str = "neutral_professional"
    priority: int = 0
    metadata: dict[str, Any] = {}


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """A successful answer to one Request, published to the results topic keyed by ``id``."""

    id: str
    success: bool = True
    content: str
    hrv_vector: HrvVector | None = None
    processing_time: float
    tenant: str
    profile_name: str
    metadata: dict[str, Any] = {}
    cached: bool = False
    attempts: int = 1


class ErrorRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A failed or rejected input, published to the errors topic.

    ``id`` is null when the input could not be decoded; ``payload`` then holds the original
    bytes, as UTF-8 text when they are valid UTF-8, otherwise base64 (``payload_encoding``).
    """

    id: str | None
    success: bool = False
    error: str
    error_type: ErrorType
    attempts: int = 0
    processing_time: float = 0.0
    tenant: str | None = None
    profile_name: str | None = None
    metadata: dict[str, Any] = {}
    payload: str | None = None
    payload_encoding: Literal["utf-8", "base64"] | None = None
