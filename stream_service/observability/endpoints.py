"""A minimal asyncio HTTP server for ``/metrics``, ``/healthz`` and ``/readyz``.

It runs on the service's own event loop, which is the point of ``/healthz``: a loop that is
blocked cannot answer, and :meth:`OpsServer.heartbeat` (a task in the service's TaskGroup)
records how late each of its wake-ups is. The server speaks just enough HTTP/1.1 for probes
and scrapers: one GET per connection, then close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_service.observability.logging import get_logger
from stream_service.observability.metrics import Metrics

__all__ = ["OpsServer", "Readiness"]

Readiness = Callable[[], tuple[bool, str]]

HEARTBEAT_INTERVAL_S = 0.5
STALE_AFTER_S = 10.0
MAX_LOOP_LAG_S = 5.0
_REQUEST_TIMEOUT_S = 5.0
_MAX_HEADER_LINES = 100
_JSON = "application/json"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}

logger = get_logger(__name__)


class OpsServer:
    """Serves metrics, liveness and readiness on ``host:port`` (port 0 picks a free port).

    Contract:

    * ``GET /metrics``: the Prometheus text exposition of ``metrics.registry``.
    * ``GET /healthz``: 200 while the last heartbeat is at most ``stale_after_s`` old and the
      last measured loop lag is at most ``max_lag_s``; 503 otherwise. The service must run
      :meth:`heartbeat`; until its first beat the construction time counts as a beat.
    * ``GET /readyz``: 200 or 503 as ``readiness()`` says; 503 if it raises.
    * anything else: 404 (405 for methods other than GET/HEAD, 400 for malformed requests).
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        readiness: Readiness,
        clock: Callable[[], float] = time.monotonic,
        *,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        stale_after_s: float = STALE_AFTER_S,
        max_lag_s: float = MAX_LOOP_LAG_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._host = host
        self._port = port
        self._metrics = metrics
        self._readiness = readiness
        self._clock = clock
        self._sleep = sleep
        self._interval_s = heartbeat_interval_s
        self._stale_after_s = stale_after_s
        self._max_lag_s = max_lag_s
        self._last_beat = clock()
        self._lag_s = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Start listening; return the bound port."""
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def heartbeat(self) -> None:
        """Run forever: wake every ``heartbeat_interval_s`` and record how late the wake-up was."""
        while True:
            expected = self._clock() + self._interval_s
            await self._sleep(self._interval_s)
            now = self._clock()
            self.beat(now, lag_s=max(0.0, now - expected))

    def beat(self, now: float, *, lag_s: float) -> None:
        """Record one heartbeat at ``now`` with the measured loop lag."""
        self._last_beat = now
        self._lag_s = lag_s
        self._metrics.event_loop_lag_seconds.set(lag_s)

    def health(self) -> tuple[bool, dict[str, float]]:
        """Whether the loop looks alive, and the figures that decided it."""
        age_s = self._clock() - self._last_beat
        healthy = age_s <= self._stale_after_s and self._lag_s <= self._max_lag_s
        return healthy, {"heartbeat_age_s": round(age_s, 6), "loop_lag_s": round(self._lag_s, 6)}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            status, content_type, body, head_only = await self._respond(reader)
            header = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(header.encode("ascii") + (b"" if head_only else body))
            await writer.drain()
        except (ConnectionError, TimeoutError):  # the client went away; nothing to answer
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                request_line = await reader.readline()
                for _ in range(_MAX_HEADER_LINES):  # headers are read and ignored
                    if (await reader.readline()) in (b"\r\n", b"\n", b""):
                        break
        except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            return 400, _JSON, b'{"error": "malformed request"}', False
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3:
            return 400, _JSON, b'{"error": "malformed request line"}', False
        method, target, _version = parts
        if method not in ("GET", "HEAD"):
            return 405, _JSON, b'{"error": "only GET and HEAD"}', False
        head_only = method == "HEAD"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._metrics.registry), head_only
        if path == "/healthz":
            healthy, figures = self.health()
            body = msgspec.json.encode({"status": "ok" if healthy else "unhealthy", **figures})
            return (200 if healthy else 503), _JSON, body, head_only
        if path == "/readyz":
            ready, detail = self._ready()
            body = msgspec.json.encode({"status": "ready" if ready else "not ready", "detail": detail})
            return (200 if ready else 503), _JSON, body, head_only
        return 404, _JSON, b'{"error": "not found"}', head_only

    def _ready(self) -> tuple[bool, str]:
        try:
            return self._readiness()
        except Exception as exc:
            # A broken readiness check must answer "not ready", never take the server down.
            logger.exception("readiness.failed")
            return False, f"readiness check raised {type(exc).__name__}: {exc}"
