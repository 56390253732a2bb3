"""Ctrl-C and SIGTERM during ``stream-service demo``: each one cancels the demo's task.

Cancelling (rather than exiting) lets the demo unwind through the ``finally`` blocks that stop
the service, the producer and a broker it started; :func:`stream_service.tools.demo.run_demo`
turns that cancellation into exit status 130.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import suppress
from typing import Any

__all__ = ["Interrupts"]


class Interrupts:
    """SIGINT/SIGTERM while the demo (not the service) handles them: each cancels the demo task.

    The first cancellation unwinds through ``finally`` blocks that stop what was started. While
    the service runs it owns these signals itself (the first drains it), and removing its
    handlers afterwards removes ours too, so :meth:`install` is called again when it returns.
    """

    def __init__(self, task: asyncio.Task[Any], say: Callable[[str], None]) -> None:
        self._task = task
        self._say = say
        self.signals = 0

    def install(self) -> None:
        """Handle SIGINT and SIGTERM on the running loop (a no-op off the main thread)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError):  # not on the main thread / platform
                loop.add_signal_handler(sig, self._on_signal)

    def remove(self) -> None:
        """Give SIGINT and SIGTERM back to their default handling."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        self.signals += 1
        if self.signals == 1:
            self._say("interrupted: stopping everything the demo started")
        self._task.cancel()
