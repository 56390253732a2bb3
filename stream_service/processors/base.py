"""The processor interface: what the engine calls, and the normalised answer it gets back.

A processor is any callable taking a :class:`~stream_service.messages.Request` and returning the
content (``str``), a mapping or struct with ``content`` and optionally ``hrv_vector`` and extra
``metadata``. It may be sync or async. A *batch* processor takes ``list[Request]`` and returns
the outputs in the same order; mark it with ``batch = True`` on the callable (or implement
``process_batch``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from stream_service.messages import Request


class Output(msgspec.Struct, frozen=True, kw_only=True):
    """What one request produced, normalised from whatever the processor returned."""

    content: str
    hrv_vector: list[float] | None = None
    metadata: dict[str, Any] = {}


@runtime_checkable
class Processor(Protocol):
    """Handles one request at a time; may return an awaitable."""

    def __call__(self, request: Request, /) -> object | Awaitable[object]: ...


@runtime_checkable
class BatchProcessor(Protocol):
    """Handles a whole batch; outputs come back in request order."""

    def process_batch(
        self, requests: Sequence[Request], /
    ) -> Sequence[object] | Awaitable[Sequence[object]]: ...
