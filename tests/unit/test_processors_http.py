"""The http processor on httpx, against a fake chat-completions server (and proxies) in the test."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stream_service import __version__
from stream_service.config import HttpProcessorSettings, Secret, load_config
from stream_service.errors import (
    ConfigError,
    PluginError,
    ProcessingTimeout,
    ProcessorFailed,
    RateLimited,
    UnknownProfile,
    UpstreamUnavailable,
)
from stream_service.messages import Request
from stream_service.pipeline.execute import AsyncExecutor
from stream_service.pipeline.retry import RetryPolicy
from stream_service.processors.base import Output
from stream_service.processors.http import ChatCompletionsProcessor, ClientPool, parse_retry_after
from stream_service.processors.loader import LoadedProcessor, ProcessorSpec, load_processor
from stream_service.processors.profiles import ProfileRegistry
from tests.fixtures.connect_proxy import ConnectProxy
from tests.fixtures.fake_openai import FakeOpenAI, Reply

REGISTRY = ProfileRegistry()
PROXIED_HOST = "model.test"  # a name only the test proxy resolves (to 127.0.0.1)
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
# The engine's retry policy without waiting: a Retry-After hint is capped at max_backoff_s (0 here).
NO_WAIT_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0, jitter=False)


def load_http(server: FakeOpenAI) -> LoadedProcessor:
    return load_processor(ProcessorSpec(name="http", http=HttpProcessorSettings(base_url=server.base_url)))


def request(prompt: str = "Tell me about Kafka", profile: str = "tech_startup") -> Request:
    return Request(id="r1", prompt=prompt, profile_name=profile)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def make(server: FakeOpenAI) -> AsyncIterator[Callable[..., ChatCompletionsProcessor]]:
    created: list[ChatCompletionsProcessor] = []

    def factory(api_key: str | None = None, **overrides: Any) -> ChatCompletionsProcessor:
        settings = HttpProcessorSettings(**{"base_url": server.base_url, "model": "m1", **overrides})
        key = Secret(api_key) if api_key else None
        processor = ChatCompletionsProcessor(settings, REGISTRY, api_key=key, clock=lambda: NOW)
        created.append(processor)
        return processor

    yield factory
    for processor in created:
        await processor.aclose()


async def test_completion_request_and_answer(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """The request is a chat completion with the profile's system prompt; the answer becomes an Output."""
    processor = make(api_key="sk-test", max_tokens=77, temperature=0.2)
    output = await processor(request())
    assert output == Output(
        content="[m1] Tell me about Kafka",
        metadata={
            "model": "m1",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        },
    )
    (received,) = server.requests
    assert (received.method, received.path) == ("POST", "/v1/chat/completions")
    assert received.headers["authorization"] == "Bearer sk-test"
    assert received.headers["content-type"] == "application/json"
    assert received.json == {
        "model": "m1",
        "messages": [
            {"role": "system", "content": REGISTRY["tech_startup"].system_prompt},
            {"role": "user", "content": "Tell me about Kafka"},
        ],
        "max_tokens": 77,
        "temperature": 0.2,
    }


async def test_user_agent_names_service_and_client(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Each request carries User-Agent: stream-service/<version> httpx/<version>."""
    await make()(request())
    assert (
        server.requests[0].headers["user-agent"] == f"stream-service/{__version__} httpx/{httpx.__version__}"
    )


async def test_no_authorization_header_without_key(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Without an API key no Authorization header is sent (local model servers need none)."""
    await make()(request())
    assert "authorization" not in server.requests[0].headers


async def test_base_url_query_is_kept(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A base_url with a trailing slash and a query (Azure's api-version) keeps the query on the endpoint."""
    await make(base_url=server.base_url + "/?api-version=2024-06-01")(request())
    assert server.requests[0].path == "/v1/chat/completions?api-version=2024-06-01"


# --- connections ----------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Sequential requests share one pooled connection."""
    processor = make()
    for _ in range(3):
        await processor(request())
    assert server.connections == 1


async def test_connection_pool_is_bounded(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Many concurrent requests never open more than max_connections connections."""
    processor = make(max_connections=2)
    outputs = await asyncio.gather(*(processor(request(f"p{i}")) for i in range(10)))
    assert [o.content for o in outputs] == [f"[m1] p{i}" for i in range(10)]
    assert server.connections <= 2


async def test_connection_bound_holds_across_the_client_pool(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """max_connections split over several httpx clients still bounds the connections in total."""
    processor = make(max_connections=20)
    outputs = await asyncio.gather(*(processor(request(f"p{i}")) for i in range(100)))
    assert [o.content for o in outputs] == [f"[m1] p{i}" for i in range(100)]
    assert server.connections <= 20


@pytest.mark.parametrize(
    ("max_connections", "sizes"),
    [
        pytest.param(1, [1], id="one"),
        pytest.param(8, [8], id="one full client"),
        pytest.param(20, [7, 7, 6], id="uneven"),
        pytest.param(64, [8] * 8, id="the default"),
    ],
)
async def test_client_pool_sizes(max_connections: int, sizes: list[int]) -> None:
    """The pool splits max_connections into clients of at most 8 connections, as evenly as it can."""
    pool = ClientPool(lambda n: httpx.AsyncClient(), max_connections)
    assert pool.sizes == sizes and sum(pool.sizes) == max_connections
    await pool.aclose()


async def test_cancelled_request_frees_its_connection_slot(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Cancelling a request that holds the only connection lets a waiting request proceed on a new one."""
    processor = make(max_connections=1)
    server.script(Reply(hang=True))
    first = asyncio.create_task(processor(request("first")))
    await server.wait_for_requests(1)
    second = asyncio.create_task(processor(request("second")))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await second).content == "[m1] second"
    assert server.connections == 2  # the cancelled request's connection was closed, not reused


async def test_idle_connection_closed_by_server_is_not_reused(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A keep-alive connection the server closed while idle is replaced before the next request is sent."""
    processor = make()
    server.script(Reply(vanish=True))
    await processor(request("one"))
    await server.wait_for_closed(1)
    assert (await processor(request("two"))).content == "[m1] two"
    assert [r.json["messages"][1]["content"] for r in server.requests] == ["one", "two"]
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(chunked=True), id="chunked body"),
        pytest.param(Reply(close=True), id="Connection: close"),
    ],
)
async def test_response_framing(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor], reply: Reply
) -> None:
    """Chunked bodies are reassembled; a Connection: close answer is not reused."""
    server.script(reply)
    processor = make()
    assert (await processor(request("a"))).content == "[m1] a"
    assert (await processor(request("b"))).content == "[m1] b"
    assert server.connections == (2 if reply.close else 1)


# --- failures: one POST each, classified for the engine --------------------------------------------


async def test_429_is_rate_limited_after_one_post(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A 429 raises RateLimited (retriable) carrying Retry-After, without a second POST of its own."""
    server.script(Reply(status=429, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimited, match=r"HTTP 429 \(Retry-After 2 s\): scripted status 429") as caught:
        await make()(request())
    assert caught.value.error_type == "rate_limit" and caught.value.retriable
    assert caught.value.retry_after_s == 2.0
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 408])
async def test_5xx_and_408_are_upstream_unavailable_after_one_post(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor], status: int
) -> None:
    """A 5xx (or 408) raises UpstreamUnavailable (retriable) with the endpoint's message, after one POST."""
    server.script(Reply(status=status, body=b'{"error": {"message": "model crashed"}}'))
    with pytest.raises(UpstreamUnavailable, match=f"HTTP {status}: model crashed") as caught:
        await make()(request())
    assert caught.value.error_type == "connection" and caught.value.retriable
    assert caught.value.retry_after_s is None
    assert len(server.requests) == 1


async def test_retry_after_as_http_date(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A Retry-After given as an HTTP-date becomes the seconds from now until then."""
    when = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    server.script(Reply(status=503, headers={"Retry-After": when}))
    with pytest.raises(UpstreamUnavailable, match=r"Retry-After 90 s") as caught:
        await make()(request())
    assert caught.value.retry_after_s == 90.0


async def test_retry_after_ms_wins(server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]) -> None:
    """OpenAI's retry-after-ms, when present, is more precise than Retry-After and wins."""
    server.script(Reply(status=429, headers={"Retry-After": "2", "retry-after-ms": "1250"}))
    with pytest.raises(RateLimited) as caught:
        await make()(request())
    assert caught.value.retry_after_s == 1.25


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("120", 120.0, id="delta-seconds"),
        pytest.param(" 1.5 ", 1.5, id="fractional seconds"),
        pytest.param("Sat, 01 Mar 2025 12:00:30 GMT", 30.0, id="IMF-fixdate"),
        pytest.param("Saturday, 01-Mar-25 12:01:00 GMT", 60.0, id="RFC 850 date"),
        pytest.param("Sat Mar  1 12:00:10 2025", 10.0, id="asctime date"),
        pytest.param("Sat, 01 Mar 2025 11:00:00 GMT", 0.0, id="date in the past is 0"),
        pytest.param("-5", None, id="negative seconds"),
        pytest.param("inf", None, id="infinite"),
        pytest.param("nan", None, id="not a number"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP-date in any of its three forms, never negative."""
    assert parse_retry_after(value, NOW) == seconds


async def test_other_4xx_is_processor_failed_without_retry(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A 400 is not retriable and fails with the status and the endpoint's message."""
    server.script(Reply(status=400, body=b'{"error": "max_tokens too large"}'))
    with pytest.raises(ProcessorFailed, match="HTTP 400: max_tokens too large") as caught:
        await make()(request())
    assert not caught.value.retriable
    assert len(server.requests) == 1


async def test_endpoint_message_is_bounded(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A long error body is cut to 300 characters in the error."""
    server.script(Reply(status=422, body=b"x" * 10_000))
    with pytest.raises(ProcessorFailed) as caught:
        await make()(request())
    assert str(caught.value).endswith("x" * 300 + "…")


async def test_401_points_at_the_key_and_never_shows_it(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A 401 says which settings hold the key; a key the endpoint echoes is shown as ***."""
    key = "sk-secret-123456"
    server.script(Reply(status=401, body=f'{{"error": {{"message": "Incorrect API key {key}"}}}}'.encode()))
    with pytest.raises(
        ProcessorFailed, match=r"HTTP 401: Incorrect API key \*\*\* \(check the API key"
    ) as caught:
        await make(api_key=key)(request())
    assert key not in str(caught.value)


async def test_slow_answer_times_out(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """An answer slower than timeout_s is a ProcessingTimeout (timeout, retriable)."""
    server.script(Reply(hang=True))
    with pytest.raises(ProcessingTimeout, match="within 0.2 s") as caught:
        await make(timeout_s=0.2)(request())
    assert caught.value.error_type == "timeout"


async def test_connection_refused_is_upstream_unavailable() -> None:
    """Nothing listening on the port: UpstreamUnavailable naming the endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again at once: nothing listens there
    settings = HttpProcessorSettings(base_url=f"http://127.0.0.1:{port}/v1")
    processor = ChatCompletionsProcessor(settings, REGISTRY)
    with pytest.raises(UpstreamUnavailable, match=f"cannot reach .*127.0.0.1:{port}/v1") as caught:
        await processor(request())
    assert caught.value.error_type == "connection"
    await processor.aclose()


async def test_connection_dropped_without_answer_is_upstream_unavailable(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A connection closed before any answer is UpstreamUnavailable, and the request is not resent."""
    server.script(Reply(drop=True))
    with pytest.raises(UpstreamUnavailable, match="RemoteProtocolError"):
        await make()(request())
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"<html>oops</html>", "not a completion", id="not JSON"),
        pytest.param(b'{"choices": []}', "no message content", id="no choices"),
        pytest.param(
            b'{"choices": [{"message": {"content": null}}]}', "no message content", id="null content"
        ),
    ],
)
async def test_malformed_completion_is_processor_failed(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor], body: bytes, message: str
) -> None:
    """A 200 whose body is not a usable chat completion is a ProcessorFailed quoting the body."""
    server.script(Reply(body=body))
    with pytest.raises(ProcessorFailed, match=message):
        await make()(request())


async def test_unknown_profile_fails_before_any_request(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """An unknown profile raises UnknownProfile without contacting the endpoint."""
    with pytest.raises(UnknownProfile):
        await make()(request(profile="pirate"))
    assert server.requests == []


# --- one retry layer: the engine's --------------------------------------------------------------------


async def test_engine_retries_send_one_post_per_attempt(server: FakeOpenAI) -> None:
    """Under the engine's RetryPolicy a 429 (date Retry-After) then a 503 then a 200 take exactly 3 POSTs."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.script(Reply(status=429, headers={"Retry-After": when}), Reply(status=503))
    processor = load_processor(
        ProcessorSpec(name="http", http=HttpProcessorSettings(base_url=server.base_url))
    )
    executor = AsyncExecutor(processor, NO_WAIT_RETRY, timeout_s=5.0, concurrency=4)
    (outcome,) = await executor.run([request()])
    await executor.aclose()
    assert outcome.error is None and outcome.output is not None
    assert outcome.attempts == 3
    assert len(server.requests) == 3


async def test_long_retry_after_ends_as_the_error_after_the_attempts(server: FakeOpenAI) -> None:
    """A Retry-After beyond retry.max_backoff_s is capped: the attempts run out, the error quotes the wait."""
    server.script(*[Reply(status=429, headers={"Retry-After": "3600"})] * 3)
    processor = load_processor(
        ProcessorSpec(name="http", http=HttpProcessorSettings(base_url=server.base_url))
    )
    executor = AsyncExecutor(processor, NO_WAIT_RETRY, timeout_s=5.0, concurrency=4)
    (outcome,) = await executor.run([request()])
    await executor.aclose()
    assert isinstance(outcome.error, RateLimited)
    assert outcome.error.retry_after_s == 3600.0 and "Retry-After 3600 s" in str(outcome.error)
    assert outcome.attempts == NO_WAIT_RETRY.max_attempts == len(server.requests)


async def test_engine_timeout_bounds_a_processor_without_its_own(server: FakeOpenAI) -> None:
    """With processor.http.timeout_s unset, executor.request_timeout_s alone ends a hung call."""
    server.script(*[Reply(hang=True)] * 3)
    processor = load_processor(
        ProcessorSpec(name="http", http=HttpProcessorSettings(base_url=server.base_url))
    )
    executor = AsyncExecutor(processor, NO_WAIT_RETRY, timeout_s=0.2, concurrency=4)
    (outcome,) = await executor.run([request()])
    await executor.aclose()
    assert isinstance(outcome.error, ProcessingTimeout)
    assert "executor.request_timeout_s=0.2" in str(outcome.error)
    assert outcome.attempts == len(server.requests) == 3


# --- loading ----------------------------------------------------------------------------------------


async def test_loaded_http_processor_uses_resolved_key(server: FakeOpenAI) -> None:
    """Through load_processor, the key config.py resolved is sent, and HRV is added to the answer."""
    settings = HttpProcessorSettings(base_url=server.base_url, api_key="sk-resolved")
    processor = load_processor(ProcessorSpec(name="http", http=settings))
    output = await processor.call_async(request())
    assert output.hrv_vector is not None
    assert server.requests[0].headers["authorization"] == "Bearer sk-resolved"
    await processor.aclose()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"base_url": "localhost:8000"}, "processor.http.base_url", id="base_url without scheme"),
        pytest.param({"base_url": "ftp://host/v1"}, "processor.http.base_url", id="base_url not http"),
        pytest.param({"proxy": "socks5://127.0.0.1:1080"}, "processor.http.proxy", id="socks proxy"),
    ],
)
def test_invalid_urls_are_config_errors(overrides: dict[str, str], message: str) -> None:
    """A base_url or proxy the client cannot use is rejected at load, naming the setting."""
    with pytest.raises(ConfigError, match=message):
        load_processor(ProcessorSpec(name="http", http=HttpProcessorSettings(**overrides)))


def test_base_url_with_credentials_is_rejected_without_showing_them() -> None:
    """A base_url holding user:password@ is a ConfigError that shows the URL with *** for them."""
    settings = HttpProcessorSettings(base_url="https://user:pa55word@api.example.com/v1")
    with pytest.raises(ConfigError, match="must not hold credentials") as caught:
        load_processor(ProcessorSpec(name="http", http=settings))
    assert "pa55word" not in str(caught.value) and "https://***@api.example.com/v1" in str(caught.value)


@pytest.mark.parametrize(
    ("module", "detail"),
    [
        pytest.param("httpx", "cannot import httpx", id="httpx"),
        pytest.param("h2", "Using http2=True, but the 'h2' package is not installed", id="h2"),
    ],
)
def test_missing_http_extra_is_a_plugin_error(
    module: str, detail: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the [http] extra, processor.name = http fails at load with one line saying what to install."""
    monkeypatch.setitem(sys.modules, module, None)  # importing it now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "stream_service.processors.http")
    with pytest.raises(PluginError) as caught:
        load_processor(ProcessorSpec(name="http"))
    message = str(caught.value)
    assert message.startswith(f"processor.name = http needs the stream-service[http] extra ({detail}")
    assert message.endswith("pip install 'stream-service[http]'") and "\n" not in message


# --- TLS, HTTP/2 and proxies ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            f"subjectAltName=IP:127.0.0.1,DNS:{PROXIED_HOST}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    yield cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


async def test_https_endpoint(certificate: tuple[Path, Path]) -> None:
    """An https base_url speaks verified TLS, and HTTP/1.1 when the server offers nothing else."""
    async with FakeOpenAI(ssl_context=server_tls(certificate)) as server:
        settings = HttpProcessorSettings(base_url=server.base_url)
        processor = ChatCompletionsProcessor(settings, REGISTRY, ssl_context=client_tls(certificate))
        assert server.base_url.startswith("https://")
        assert (await processor(request("tls"))).content == "[default] tls"
        assert server.requests[0].http_version == "HTTP/1.1"
        await processor.aclose()


async def test_https_rejects_untrusted_certificate(certificate: tuple[Path, Path]) -> None:
    """A certificate the client does not trust fails as UpstreamUnavailable."""
    async with FakeOpenAI(ssl_context=server_tls(certificate)) as server:
        processor = ChatCompletionsProcessor(HttpProcessorSettings(base_url=server.base_url), REGISTRY)
        with pytest.raises(UpstreamUnavailable, match="SSL"):
            await processor(request())
        await processor.aclose()


async def test_http2_multiplexes_requests_on_one_connection(certificate: tuple[Path, Path]) -> None:
    """Against a server offering h2 by ALPN, requests go over HTTP/2, concurrently on one connection."""
    async with FakeOpenAI(ssl_context=server_tls(certificate), http2=True) as server:
        settings = HttpProcessorSettings(base_url=server.base_url, max_connections=1)
        processor = ChatCompletionsProcessor(settings, REGISTRY, ssl_context=client_tls(certificate))
        server.script(Reply(status=429, headers={"Retry-After": "3"}))
        first = asyncio.create_task(processor(request("limited")))
        outputs = await asyncio.gather(*(processor(request(f"p{i}")) for i in range(20)))
        with pytest.raises(RateLimited) as caught:
            await first
        await processor.aclose()
    assert [o.content for o in outputs] == [f"[default] p{i}" for i in range(20)]
    assert caught.value.retry_after_s == 3.0
    assert {r.http_version for r in server.requests} == {"HTTP/2"}
    assert server.connections == 1


async def test_http2_can_be_turned_off(certificate: tuple[Path, Path]) -> None:
    """With processor.http.http2 = false the client keeps to HTTP/1.1 even when h2 is offered."""
    async with FakeOpenAI(ssl_context=server_tls(certificate), http2=True) as server:
        settings = HttpProcessorSettings(base_url=server.base_url, http2=False)
        processor = ChatCompletionsProcessor(settings, REGISTRY, ssl_context=client_tls(certificate))
        await processor(request())
        await processor.aclose()
    assert server.requests[0].http_version == "HTTP/1.1"


async def test_https_through_connect_proxy_from_https_proxy(certificate: tuple[Path, Path]) -> None:
    """HTTPS_PROXY, read by config.py into processor.http.proxy, tunnels the TLS connection via CONNECT."""
    async with (
        FakeOpenAI(ssl_context=server_tls(certificate), http2=True) as server,
        ConnectProxy(hosts={PROXIED_HOST: "127.0.0.1"}) as proxy,
    ):
        base_url = f"https://{PROXIED_HOST}:{server.port}/v1"
        config = load_config(
            environ={"HTTPS_PROXY": proxy.url, "STREAM_SERVICE_PROCESSOR__HTTP__BASE_URL": base_url}
        )
        assert config.processor.http.proxy == proxy.url
        tls = client_tls(certificate)
        processor = ChatCompletionsProcessor(config.processor.http, REGISTRY, ssl_context=tls)
        assert (await processor(request("via proxy"))).content == "[default] via proxy"
        await processor.aclose()
    assert [t.target for t in proxy.tunnels] == [f"{PROXIED_HOST}:{server.port}"]
    assert server.requests[0].http_version == "HTTP/2"  # ALPN runs end to end through the tunnel
    assert server.requests[0].headers[":authority"] == f"{PROXIED_HOST}:{server.port}"


async def test_proxy_credentials_are_sent_and_never_shown(certificate: tuple[Path, Path]) -> None:
    """A proxy URL's user:password becomes Proxy-Authorization; a refusal names the proxy without them."""
    async with FakeOpenAI(ssl_context=server_tls(certificate)) as server:
        async with ConnectProxy(credentials=("alice", "s3cret")) as proxy:
            good = proxy.url.replace("http://", "http://alice:s3cret@")
            bad = proxy.url.replace("http://", "http://alice:wrong-s3cret@")
            for url in (good, bad):
                settings = HttpProcessorSettings(base_url=server.base_url, proxy=url)
                processor = ChatCompletionsProcessor(settings, REGISTRY, ssl_context=client_tls(certificate))
                try:
                    if url == good:
                        assert (await processor(request("ok"))).content == "[default] ok"
                    else:
                        with pytest.raises(UpstreamUnavailable, match="407") as caught:
                            await processor(request())
                        assert "s3cret" not in str(caught.value)
                finally:
                    await processor.aclose()
    assert proxy.tunnels[0].proxy_authorization == "Basic YWxpY2U6czNjcmV0"  # alice:s3cret
    assert len(server.requests) == 1


async def test_http_endpoint_through_forwarding_proxy(server: FakeOpenAI) -> None:
    """An http:// endpoint goes through the proxy as an absolute-form request (the proxy forwards it)."""
    settings = HttpProcessorSettings(
        base_url="http://model.internal:8000/v1", proxy=f"http://127.0.0.1:{server.port}"
    )
    processor = ChatCompletionsProcessor(settings, REGISTRY)
    assert (await processor(request("forwarded"))).content == "[default] forwarded"
    await processor.aclose()
    assert server.requests[0].path == "http://model.internal:8000/v1/chat/completions"
