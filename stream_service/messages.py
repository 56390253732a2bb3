"""The wire contract: what upstream producers send and what downstream consumers receive.

Rules for evolving it: new fields get defaults; an existing field never changes type; inbound
messages never forbid unknown fields (an upstream may be newer than us).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec

from stream_service.errors import ErrorType

HRV_DIMENSIONS = 8

MAX_ID_CHARS = 256
MAX_NAME_CHARS = 256  # tenant and profile_name: they travel in every output, and as a header

RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)]
HrvVector = Annotated[
    list[Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]],
    msgspec.Meta(min_length=HRV_DIMENSIONS, max_length=HRV_DIMENSIONS),
]


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One unit of work, as produced to the input topic.

    ``prompt`` is also bounded by ``limits.max_prompt_bytes`` (UTF-8), checked at decode time
    because the bound is a setting, not part of the type. ``metadata`` must come out of both
    output encodings as it went in (JSON data: string keys, integers within 64 bits, finite
    floats), also checked at decode time.
    """

    id: RequestId
    prompt: str
    tenant: Name = "default"
    profile_name: Name = "neutral_professional"
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


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what MessagePack can carry
_SCALARS = (str, bool, type(None))


def metadata_problem(metadata: dict[str, Any]) -> str | None:
    """Why ``metadata`` would not come out of both output encodings (JSON and MessagePack) as it
    went in, as ``"$.metadata.path: reason"``; None when it would.

    Allowed: objects with string keys, arrays, strings, booleans, null, integers from -2**63 to
    2**64 - 1, finite floats. Anything else (MessagePack extension types, binary, timestamps,
    non-string keys, NaN, integers beyond 64 bits, objects a processor made) is a problem.
    """
    stack: list[tuple[Any, str]] = [(metadata, "$.metadata")]
    while stack:
        node, path = stack.pop()
        kind = type(node)
        if kind is dict:
            for key, value in node.items():
                if type(key) is not str:
                    return f"{path}: a key of type {type(key).__name__}; keys must be strings"
                if type(value) not in _SCALARS:
                    stack.append((value, f"{path}.{key}"))
        elif kind is list:
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node))
        elif kind is int:
            if not _INT_MIN <= node <= _INT_MAX:
                return f"{path}: the integer is beyond 64 bits"
        elif kind is float:
            if not math.isfinite(node):
                return f"{path}: {node} is not a finite number"
        elif kind not in _SCALARS:
            return f"{path}: a value of type {kind.__name__}; expected JSON data"
    return None
