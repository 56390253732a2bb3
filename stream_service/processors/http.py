"""The http processor: asks an OpenAI-compatible chat-completions endpoint to write the content.

It needs httpx (the ``stream-service[http]`` extra): connection pooling, HTTP/2 over TLS, proxies.
One call is one POST: the processor never retries; the engine's retry policy does, waiting at
least the ``Retry-After`` the endpoint sent (carried by the error as ``retry_after_s``).
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
import msgspec

from stream_service import __version__
from stream_service.errors import (
    ProcessingTimeout,
    ProcessorFailed,
    RateLimited,
    RequestError,
    UpstreamUnavailable,
)
from stream_service.messages import Request
from stream_service.processors.base import Output
from stream_service.processors.profiles import ProfileRegistry
from stream_service.settings import REDACTED, HttpProcessorSettings, Secret, redact_url

USER_AGENT: Final = f"stream-service/{__version__} httpx/{httpx.__version__}"
MAX_BODY_BYTES: Final = 32 * 1024 * 1024  # a larger answer is not a chat completion we can use
CLIENT_CONNECTIONS: Final = 8  # connections per httpx client: see ClientPool
_MESSAGE_CHARS: Final = 300
_KEY_HINT: Final = "check the API key (processor.http.api_key_file, api_key_env or OPENAI_API_KEY)"


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    model: str | None = None
    usage: dict[str, Any] | None = None


_completion_decoder: Final = msgspec.json.Decoder(_Completion)
_encoder: Final = msgspec.json.Encoder()


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds from ``now``: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    A date in the past is 0; a negative, non-finite or unparseable value is None (no hint).
    """
    if value is None or not (value := value.strip()):
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" and asctime dates carry no zone: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_s(headers: httpx.Headers, now: datetime) -> float | None:
    """The wait an answer asks for: OpenAI's ``retry-after-ms`` when valid, else ``Retry-After``."""
    try:
        millis = float(headers.get("retry-after-ms", "nan"))
    except ValueError:
        millis = math.nan
    if math.isfinite(millis) and millis >= 0:
        return millis / 1000.0
    return parse_retry_after(headers.get("retry-after"), now)


def endpoint_url(base_url: str) -> httpx.URL:
    """``{base_url}/chat/completions``; raises ValueError naming the setting for a bad base_url."""
    shown = redact_url(base_url)
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"processor.http.base_url {shown!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"processor.http.base_url {shown!r} must be an absolute http:// or https:// URL")
    if url.userinfo:
        raise ValueError(
            f"processor.http.base_url {shown!r} must not hold credentials: give the key in "
            "processor.http.api_key_file or the variable api_key_env names"
        )
    return url.copy_with(path=url.path.rstrip("/") + "/chat/completions")


def proxy_url(proxy: str | None) -> httpx.Proxy | None:
    """The proxy to send through; raises ValueError naming the setting for one httpx cannot use."""
    if proxy is None:
        return None
    shown = redact_url(proxy)
    try:
        parsed = httpx.Proxy(proxy)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"processor.http.proxy {shown!r} is not a usable proxy URL: {exc}") from None
    if parsed.url.scheme not in ("http", "https"):
        raise ValueError(f"processor.http.proxy {shown!r} must be an http:// or https:// proxy URL")
    return parsed


def _message(body: bytes) -> str:
    """The endpoint's own error message (``error.message`` in OpenAI's shape), else the body; bounded."""
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        found = error.get("message") if isinstance(error, dict) else error
        if isinstance(found, str) and found.strip():
            text = found.strip()
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "…"


class ClientPool:
    """``max_connections`` connections split over clients of at most ``CLIENT_CONNECTIONS`` each.

    httpcore's pool, on every request and every release, checks each of its connections against
    each waiting request, so one pool of 64 connections under load costs about four times the
    CPU per request of eight pools of eight (measured at 64 concurrent requests on a local
    endpoint: 3.1 ms against 0.78 ms of client CPU per request). Each request goes to the client
    with the most free connections, so a light load keeps reusing the first client's connections.
    """

    def __init__(self, make: Callable[[int], httpx.AsyncClient], max_connections: int) -> None:
        count = -(-max_connections // CLIENT_CONNECTIONS)
        self.sizes = [max_connections // count + (i < max_connections % count) for i in range(count)]
        self._clients = [make(size) for size in self.sizes]
        self._busy = [0] * count

    @asynccontextmanager
    async def stream(
        self, url: httpx.URL, body: bytes, headers: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """POST ``body`` (with ``headers`` beside the client's) to ``url`` on the least loaded
        client; the response streams inside."""
        index = min(range(len(self._busy)), key=lambda i: self._busy[i] - self.sizes[i])
        self._busy[index] += 1
        try:
            async with self._clients[index].stream("POST", url, content=body, headers=headers) as response:
                yield response
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


class ChatCompletionsProcessor:
    """Async per-request processor that POSTs ``{base_url}/chat/completions``, once per call.

    The system message is the request profile's ``system_prompt``; the user message is the
    prompt. Guarantees: one call sends at most one request and never retries or sleeps; it is
    bounded by ``timeout_s`` when set (else by the engine's ``executor.request_timeout_s``).
    Failures raise: ``UnknownProfile`` for an unknown profile (before any network use);
    ``RateLimited`` for a 429 and ``UpstreamUnavailable`` for a 408, a 5xx, or an endpoint
    (or proxy) that cannot be reached or breaks the protocol, both carrying the answer's
    ``Retry-After`` as ``retry_after_s``; ``ProcessingTimeout`` past ``timeout_s``;
    ``ProcessorFailed`` (not retried) for any other status, with the endpoint's message, or a
    body that is not a chat completion. No message holds the API key or URL credentials.

    HTTP/2 is negotiated over TLS when ``settings.http2``; ``settings.proxy`` (filled by
    config.py from the conventional variables) tunnels through a proxy. The environment is
    not read here (``trust_env=False``). An https endpoint is verified with ``ssl_context``
    (default: the system trust store, which honours ``SSL_CERT_FILE``). ``clock`` gives the
    current time for ``Retry-After`` dates. With ``trace_requests`` (tracing on), each request
    carries the current OpenTelemetry context (``traceparent``, ``tracestate``, as
    ``OTEL_PROPAGATORS`` says): the engine makes the request's span the current one.
    """

    def __init__(
        self,
        settings: HttpProcessorSettings,
        registry: ProfileRegistry,
        *,
        api_key: Secret | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        trace_requests: bool = False,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.profiles: frozenset[str] = registry.names
        self._url = endpoint_url(settings.base_url)
        self._shown_url = str(self._url)  # holds no credentials: endpoint_url rejects them
        headers = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": USER_AGENT}
        proxy = proxy_url(settings.proxy)
        # Scrubbed from every message, should an endpoint or a library echo one of them.
        proxy_password = proxy.auth[1] if proxy is not None and proxy.auth else None
        self._secrets = [s for s in (api_key and api_key.reveal(), proxy_password) if s]
        if api_key:
            headers["Authorization"] = f"Bearer {api_key.reveal()}"
        verify = ssl_context or ssl.create_default_context()

        def client(connections: int) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(settings.timeout_s),
                limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                http2=settings.http2,
                proxy=proxy,
                verify=verify,
                trust_env=False,
                follow_redirects=False,
            )

        self._clients = ClientPool(client, settings.max_connections)
        self._clock = clock
        self._inject: Callable[[dict[str, str]], None] | None = None
        if trace_requests:  # only then: nothing of OpenTelemetry is imported with tracing off
            from opentelemetry.propagate import inject

            self._inject = inject

    async def __call__(self, request: Request) -> Output:
        profile = self.registry.get_profile(request.profile_name)
        settings = self.settings
        body = _encoder.encode(
            {
                "model": settings.model,
                "messages": [
                    {"role": "system", "content": profile.system_prompt},
                    {"role": "user", "content": request.prompt},
                ],
                "max_tokens": settings.max_tokens,
                "temperature": settings.temperature,
            }
        )
        trace_headers: dict[str, str] | None = None
        if self._inject is not None:
            trace_headers = {}
            self._inject(trace_headers)
        with self._classified():
            async with asyncio.timeout(settings.timeout_s):
                async with self._clients.stream(self._url, body, trace_headers) as response:
                    status, headers = response.status_code, response.headers
                    answer = await self._read(response)
        if 200 <= status < 300:
            return self._output(answer)
        raise self._failure(status, headers, answer)

    async def _read(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ProcessorFailed(
                    f"chat-completions endpoint {self._shown_url} answered more than {MAX_BODY_BYTES} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @contextmanager
    def _classified(self) -> Iterator[None]:
        """Turn transport failures and timeouts into RequestErrors naming the endpoint."""
        timeout_s = self.settings.timeout_s
        try:
            yield
        except RequestError:
            raise
        except (TimeoutError, httpx.TimeoutException) as exc:
            phase = f" ({type(exc).__name__})" if isinstance(exc, httpx.TimeoutException) else ""
            raise ProcessingTimeout(
                f"chat-completions endpoint {self._shown_url} did not answer within {timeout_s} s"
                f"{phase} (processor.http.timeout_s)"
            ) from None
        except httpx.ProxyError as exc:
            raise UpstreamUnavailable(self._scrub(f"the proxy refused {self._shown_url}: {exc}")) from None
        except (httpx.HTTPError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise UpstreamUnavailable(
                self._scrub(f"cannot reach chat-completions endpoint {self._shown_url}: {detail}")
            ) from None

    def _failure(self, status: int, headers: httpx.Headers, body: bytes) -> RequestError:
        message = _message(body)
        after = retry_after_s(headers, self._clock()) if status in (408, 429) or status >= 500 else None
        waits = f" (Retry-After {after:g} s)" if after is not None else ""
        text = self._scrub(f"chat-completions endpoint answered HTTP {status}{waits}: {message}")
        if status == 429:
            return RateLimited(text, retry_after_s=after)
        if status == 408 or status >= 500:
            return UpstreamUnavailable(text, retry_after_s=after)
        if status in (401, 403):
            text += f" ({_KEY_HINT})"
        return ProcessorFailed(text)

    def _scrub(self, text: str) -> str:
        """``text`` without any secret this processor holds, should an endpoint or library echo one."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return redact_url(text)

    def _output(self, body: bytes) -> Output:
        try:
            completion = _completion_decoder.decode(body)
        except msgspec.DecodeError as exc:
            text = f"chat-completions endpoint answered a body that is not a completion ({exc}): "
            text += _message(body)
            raise ProcessorFailed(self._scrub(text)) from None
        choice = completion.choices[0] if completion.choices else None
        if choice is None or choice.message.content is None:
            raise ProcessorFailed(
                self._scrub(f"chat-completions answer has no message content: {_message(body)}")
            )
        metadata: dict[str, Any] = {"model": completion.model or self.settings.model}
        if choice.finish_reason is not None:
            metadata["finish_reason"] = choice.finish_reason
        if completion.usage is not None:
            metadata["usage"] = completion.usage
        return Output(content=choice.message.content, metadata=metadata)

    async def aclose(self) -> None:
        await self._clients.aclose()
