"""Processors the benchmarks load with ``--processor python:bench.plugins:<name>``.

They stand for remote calls: each awaits a fixed time and returns the prompt, so the engine's
concurrency, not the CPU, decides the throughput.
"""

from __future__ import annotations

import asyncio

from stream_service.messages import Request

SLEEP20_S = 0.020  # W2: an I/O-bound request
SLEEP50_S = 0.050  # memory test: a slow processor that keeps the in-flight bound full


async def sleep20(request: Request) -> str:
    """Waits 20 ms, then echoes the prompt."""
    await asyncio.sleep(SLEEP20_S)
    return request.prompt


async def sleep50(request: Request) -> str:
    """Waits 50 ms, then echoes the prompt."""
    await asyncio.sleep(SLEEP50_S)
    return request.prompt
