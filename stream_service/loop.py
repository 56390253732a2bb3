"""The event loop the service runs on: uvloop where it is installed (Linux, macOS), else asyncio's."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Literal

EventLoop = Literal["auto", "uvloop", "asyncio"]


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``asyncio.Runner(loop_factory=...)``; None means asyncio's default loop.

    ``auto`` takes uvloop when it can be imported; ``uvloop`` insists on it (``ImportError``
    when it is missing); ``asyncio`` never uses it.
    """
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return None
    import uvloop

    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what ``service.started`` reports."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
