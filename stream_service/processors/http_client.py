"""A small HTTP/1.1 client on ``asyncio`` streams: keep-alive pooling, Content-Length and chunked
bodies, TLS for ``https`` URLs. Just enough for one JSON API; no redirects, no compression,
no proxies. It exists so the http processor adds no dependency.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

import msgspec

_MAX_HEADER_LINE_BYTES: Final = 64 * 1024
_MAX_HEADER_COUNT: Final = 100
_MAX_BODY_BYTES: Final = 32 * 1024 * 1024
_NO_BODY_STATUSES: Final = frozenset({204, 304})


class HttpProtocolError(ConnectionError):
    """The peer sent something that is not valid HTTP/1.1 (or too large); the connection is dropped."""


class _NoResponse(ConnectionError):
    """The connection failed before any byte of a response arrived; the request was not answered."""


class HttpResponse(msgspec.Struct, frozen=True):
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class HttpClient:
    """Sends requests to one origin (scheme, host, port) over at most ``max_connections``
    pooled keep-alive connections.

    Guarantees: never more than ``max_connections`` connections open; a caller waits for a
    free one. A connection goes back to the pool only after its response was read completely
    and neither side asked to close it; any error closes it. A request that fails on a reused
    connection before a single response byte arrives is sent once more on a fresh connection
    (the server may have closed the idle connection just as it was reused). Raises
    ``OSError`` subclasses only: transport failures as they come, ``HttpProtocolError`` for a
    malformed, oversized or truncated response. Timeouts are the caller's (wrap calls in ``asyncio.timeout``).
    """

    def __init__(
        self, base_url: str, *, max_connections: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {base_url!r} must be an absolute http:// or https:// URL")
        self.host: str = parts.hostname
        self.port: int = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path: str = parts.path.rstrip("/")
        default_port = 443 if parts.scheme == "https" else 80
        self._host_header = self.host if self.port == default_port else f"{self.host}:{self.port}"
        if ":" in self.host:  # an IPv6 literal goes in brackets in the Host header
            self._host_header = f"[{self.host}]" + ("" if self.port == default_port else f":{self.port}")
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        self._closed = False
        self.connections_opened = 0

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        if self._closed:
            raise ConnectionError("the HTTP client is closed")
        message = self._head(method, self.base_path + path, body, headers or {}) + body
        async with self._slots:
            connection, reused = await self._checkout()
            try:
                try:
                    response, reusable = await _exchange(connection, message)
                except _NoResponse:
                    if not reused:
                        raise
                    # The server closed the idle connection just as we reused it: nothing was
                    # processed, so sending once more on a fresh connection is safe.
                    connection.close()
                    connection = await self._open()
                    response, reusable = await _exchange(connection, message)
            except BaseException:
                connection.close()
                raise
            if reusable and not self._closed:
                self._idle.append(connection)
            else:
                connection.close()
            return response

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        while self._idle:
            connection = self._idle.popleft()
            connection.close()
            try:
                await connection.writer.wait_closed()
            except OSError:
                pass  # the peer may already have dropped it; nothing left to release

    async def _checkout(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection, True
            connection.close()
        return await self._open(), False

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self._ssl,
            server_hostname=self.host if self._ssl else None,
            limit=_MAX_HEADER_LINE_BYTES,
        )
        self.connections_opened += 1
        return _Connection(reader, writer)

    def _head(self, method: str, target: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [
            f"{method} {target or '/'} HTTP/1.1",
            f"Host: {self._host_header}",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive",
        ]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} contains a line break")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _exchange(connection: _Connection, message: bytes) -> tuple[HttpResponse, bool]:
    """Send one request and read its response; whether the connection may carry another."""
    try:
        connection.writer.write(message)
        await connection.writer.drain()
        status_line = await _read_line(connection.reader)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise HttpProtocolError("the connection closed in the middle of the status line") from exc
        raise _NoResponse("the server closed the connection without answering") from exc
    except ConnectionResetError as exc:
        raise _NoResponse(f"the connection was reset before a response: {exc}") from exc
    try:
        return await _read_response(connection.reader, status_line)
    except asyncio.IncompleteReadError as exc:
        raise HttpProtocolError("the connection closed in the middle of a response") from exc


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as exc:
        raise HttpProtocolError("an HTTP header line is too long") from exc
    return line.rstrip(b"\r\n")


async def _read_response(reader: asyncio.StreamReader, status_line: bytes) -> tuple[HttpResponse, bool]:
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpProtocolError(f"malformed HTTP status line {status_line[:100]!r}")
    status = int(parts[1])
    keep_alive = parts[0] == b"HTTP/1.1"
    headers: dict[str, str] = {}
    while True:
        line = await _read_line(reader)
        if not line:
            break
        if len(headers) >= _MAX_HEADER_COUNT:
            raise HttpProtocolError("too many HTTP response headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise HttpProtocolError(f"malformed HTTP header line {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    if "close" in headers.get("connection", "").lower():
        keep_alive = False
    elif "keep-alive" in headers.get("connection", "").lower():
        keep_alive = True

    if status in _NO_BODY_STATUSES or 100 <= status < 200:
        return HttpResponse(status, headers, b""), keep_alive
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
        if not 0 <= length <= _MAX_BODY_BYTES:
            raise HttpProtocolError(f"response body of {length} bytes is over the {_MAX_BODY_BYTES} limit")
        body = await reader.readexactly(length)
    else:  # delimited by the end of the connection
        body = await reader.read(_MAX_BODY_BYTES + 1)
        while len(body) <= _MAX_BODY_BYTES and not reader.at_eof():
            more = await reader.read(_MAX_BODY_BYTES + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > _MAX_BODY_BYTES:
            raise HttpProtocolError(f"response body is over the {_MAX_BODY_BYTES} byte limit")
        keep_alive = False
    return HttpResponse(status, headers, body), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await _read_line(reader)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpProtocolError(f"bad chunk size line {size_line[:100]!r}") from None
        if size == 0:
            break
        total += size
        if total > _MAX_BODY_BYTES:
            raise HttpProtocolError(f"response body is over the {_MAX_BODY_BYTES} byte limit")
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HttpProtocolError("a chunk is not followed by CRLF")
    while await _read_line(reader):  # trailer fields, ignored
        pass
    return b"".join(chunks)
