"""The echo processor: answers every request with its own prompt (for tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

from stream_service.messages import Request
from stream_service.processors.base import Output


class EchoProcessor:
    """Sync batch processor whose content is the prompt, unchanged. Never raises.

    It does as little as possible so benchmarks measure the engine, not the processor.
    """

    __slots__ = ()

    def process_batch(self, requests: Sequence[Request], /) -> list[Output]:
        return [Output(content=request.prompt) for request in requests]
