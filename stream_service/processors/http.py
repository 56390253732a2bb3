"""The http processor: asks an OpenAI-compatible chat-completions endpoint to write the content."""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from stream_service.errors import ProcessingTimeout, ProcessorFailed, RateLimited, UpstreamUnavailable
from stream_service.messages import Request
from stream_service.processors.base import Output
from stream_service.processors.http_client import HttpClient, HttpResponse
from stream_service.processors.profiles import ProfileRegistry
from stream_service.settings import HttpProcessorSettings, Secret

_INITIAL_BACKOFF_S: Final = 0.2
_MAX_BACKOFF_S: Final = 10.0
# An endpoint may ask for a long pause; past this we give up on the request and let the
# engine's retry policy (and the consumer's pacing) decide.
_MAX_RETRY_AFTER_S: Final = 60.0
_BODY_SNIPPET_CHARS: Final = 300


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


def _retry_after_s(response: HttpResponse) -> float | None:
    """The ``Retry-After`` header in seconds; ``None`` when absent or an HTTP date (not supported)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= _BODY_SNIPPET_CHARS else text[:_BODY_SNIPPET_CHARS] + "…"


class ChatCompletionsProcessor:
    """Async per-request processor that POSTs ``{base_url}/chat/completions``.

    The system message is the request profile's ``system_prompt``; the user message is the
    prompt. Guarantees: each attempt is bounded by ``timeout_s``; 429 and 5xx answers are
    retried up to ``max_retries`` times, waiting ``Retry-After`` seconds when given (capped at
    60 s) or an exponential backoff otherwise. Failures raise: ``UnknownProfile`` for an
    unknown profile (before any network use); ``UpstreamUnavailable`` when the endpoint cannot
    be reached, drops the connection, answers malformed HTTP or still 5xx after the retries;
    ``ProcessingTimeout`` when an attempt exceeds ``timeout_s``; ``RateLimited`` when still
    429; ``ProcessorFailed`` for any other status (with a body snippet) or a body that is not a
    chat completion. ``sleep`` is injected so tests observe backoff without waiting; an https
    endpoint is verified with ``ssl_context`` (default: the system trust store, which honours
    ``SSL_CERT_FILE``).
    """

    def __init__(
        self,
        settings: HttpProcessorSettings,
        registry: ProfileRegistry,
        *,
        api_key: Secret | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.profiles: frozenset[str] = registry.names
        self._client = HttpClient(
            settings.base_url, max_connections=settings.max_connections, ssl_context=ssl_context
        )
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key.reveal()}"
        self._sleep = sleep

    @property
    def connections_opened(self) -> int:
        return self._client.connections_opened

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
        attempt = 0
        while True:
            response = await self._attempt(body)
            status = response.status
            if 200 <= status < 300:
                return self._output(response)
            retriable = status == 429 or status >= 500
            if not retriable:
                raise ProcessorFailed(
                    f"chat-completions endpoint answered HTTP {status}: {_snippet(response.body)}"
                )
            retry_after_s = _retry_after_s(response)
            if attempt >= settings.max_retries or (retry_after_s or 0.0) > _MAX_RETRY_AFTER_S:
                detail = f"HTTP {status} after {attempt + 1} attempt(s): {_snippet(response.body)}"
                if status == 429:
                    raise RateLimited(f"chat-completions endpoint {detail}", retry_after_s=retry_after_s)
                raise UpstreamUnavailable(f"chat-completions endpoint {detail}", retry_after_s=retry_after_s)
            if retry_after_s is None:
                retry_after_s = min(_INITIAL_BACKOFF_S * 2**attempt, _MAX_BACKOFF_S)
            attempt += 1
            await self._sleep(retry_after_s)

    async def _attempt(self, body: bytes) -> HttpResponse:
        timeout_s = self.settings.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                return await self._client.request("POST", "/chat/completions", body, self._headers)
        except TimeoutError:
            raise ProcessingTimeout(
                f"chat-completions endpoint did not answer within {timeout_s} s (processor.http.timeout_s)"
            ) from None
        except OSError as exc:
            raise UpstreamUnavailable(
                f"cannot reach chat-completions endpoint {self.settings.base_url}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _output(self, response: HttpResponse) -> Output:
        try:
            completion = _completion_decoder.decode(response.body)
        except msgspec.DecodeError as exc:
            raise ProcessorFailed(
                f"chat-completions endpoint answered a body that is not a completion ({exc}): "
                f"{_snippet(response.body)}"
            ) from None
        choice = completion.choices[0] if completion.choices else None
        if choice is None or choice.message.content is None:
            raise ProcessorFailed(
                f"chat-completions answer has no message content: {_snippet(response.body)}"
            )
        metadata: dict[str, Any] = {"model": completion.model or self.settings.model}
        if choice.finish_reason is not None:
            metadata["finish_reason"] = choice.finish_reason
        if completion.usage is not None:
            metadata["usage"] = completion.usage
        return Output(content=choice.message.content, metadata=metadata)

    async def aclose(self) -> None:
        await self._client.aclose()
