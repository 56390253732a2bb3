"""The http processor and its HTTP/1.1 client, against a fake chat-completions server in the test."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_service.config import HttpProcessorSettings, Secret
from stream_service.errors import (
    ConfigError,
    ProcessingTimeout,
    ProcessorFailed,
    RateLimited,
    UnknownProfile,
    UpstreamUnavailable,
)
from stream_service.messages import Request
from stream_service.processors.base import Output
from stream_service.processors.http import ChatCompletionsProcessor
from stream_service.processors.loader import ProcessorSpec, load_processor
from stream_service.processors.profiles import ProfileRegistry
from tests.fixtures.fake_openai import FakeOpenAI, Reply

REGISTRY = ProfileRegistry()


class RecordedSleep:
    """Stands in for asyncio.sleep: records each backoff instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def request(prompt: str = "Tell me about Kafka", profile: str = "tech_startup") -> Request:
    return Request(id="r1", prompt=prompt, profile_name=profile)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def sleep() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
async def make(
    server: FakeOpenAI, sleep: RecordedSleep
) -> AsyncIterator[Callable[..., ChatCompletionsProcessor]]:
    created: list[ChatCompletionsProcessor] = []

    def factory(api_key: str | None = None, **overrides: Any) -> ChatCompletionsProcessor:
        settings = HttpProcessorSettings(base_url=server.base_url, model="m1", **overrides)
        key = Secret(api_key) if api_key else None
        processor = ChatCompletionsProcessor(settings, REGISTRY, api_key=key, sleep=sleep)
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
    assert received.json == {
        "model": "m1",
        "messages": [
            {"role": "system", "content": REGISTRY["tech_startup"].system_prompt},
            {"role": "user", "content": "Tell me about Kafka"},
        ],
        "max_tokens": 77,
        "temperature": 0.2,
    }


async def test_no_authorization_header_without_key(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Without an API key no Authorization header is sent (local model servers need none)."""
    await make()(request())
    assert "authorization" not in server.requests[0].headers


async def test_keep_alive_reuses_one_connection(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Sequential requests share one pooled connection."""
    processor = make()
    for _ in range(3):
        await processor(request())
    assert server.connections == 1 and processor.connections_opened == 1


async def test_connection_pool_is_bounded(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Many concurrent requests never open more than max_connections connections."""
    processor = make(max_connections=2)
    outputs = await asyncio.gather(*(processor(request(f"p{i}")) for i in range(10)))
    assert [o.content for o in outputs] == [f"[m1] p{i}" for i in range(10)]
    assert server.connections <= 2 and processor.connections_opened <= 2


async def test_cancelled_request_frees_its_connection_slot(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Cancelling a request that holds the only connection lets a waiting request proceed on a new one."""
    processor = make(max_connections=1, timeout_s=30.0)
    server.script(Reply(hang=True))
    first = asyncio.create_task(processor(request("first")))
    await server.wait_for_requests(1)
    second = asyncio.create_task(processor(request("second")))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await second).content == "[m1] second"
    assert processor.connections_opened == 2  # the cancelled request's connection was closed, not reused


async def test_429_honours_retry_after_then_succeeds(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor], sleep: RecordedSleep
) -> None:
    """A 429 with Retry-After waits that many seconds, then retries and succeeds."""
    server.script(Reply(status=429, headers={"Retry-After": "2"}))
    output = await make()(request())
    assert output.content == "[m1] Tell me about Kafka"
    assert sleep.delays == [2.0]
    assert len(server.requests) == 2


async def test_429_after_retries_is_rate_limited(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor], sleep: RecordedSleep
) -> None:
    """Still 429 after max_retries retries: RateLimited (rate_limit, retriable) carrying Retry-After."""
    server.script(*[Reply(status=429, headers={"Retry-After": "1.5"})] * 3)
    with pytest.raises(RateLimited, match="HTTP 429 after 3 attempt") as caught:
        await make(max_retries=2)(request())
    assert caught.value.error_type == "rate_limit" and caught.value.retriable
    assert caught.value.retry_after_s == 1.5
    assert len(server.requests) == 3 and sleep.delays == [1.5, 1.5]


async def test_5xx_backs_off_exponentially_then_succeeds(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor], sleep: RecordedSleep
) -> None:
    """5xx without Retry-After is retried after an exponentially growing backoff."""
    server.script(Reply(status=500), Reply(status=503))
    output = await make()(request())
    assert output.content.startswith("[m1]")
    assert sleep.delays == [pytest.approx(0.2), pytest.approx(0.4)]


async def test_5xx_after_retries_is_upstream_unavailable(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """Still 5xx after the retries: UpstreamUnavailable (connection, retriable) with the body snippet."""
    server.script(*[Reply(status=500, body=b"model crashed")] * 2)
    with pytest.raises(UpstreamUnavailable, match="HTTP 500 after 2 attempt.*model crashed") as caught:
        await make(max_retries=1)(request())
    assert caught.value.error_type == "connection"


async def test_retry_after_beyond_cap_fails_without_waiting(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor], sleep: RecordedSleep
) -> None:
    """A Retry-After over a minute is not waited for; the failure carries it for the engine."""
    server.script(Reply(status=429, headers={"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as caught:
        await make()(request())
    assert caught.value.retry_after_s == 3600.0 and sleep.delays == []


async def test_other_4xx_is_processor_failed_without_retry(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A 400 is not retried and fails with the status and a snippet of the body."""
    server.script(Reply(status=400, body=b'{"error": "max_tokens too large"}'))
    with pytest.raises(ProcessorFailed, match="HTTP 400.*max_tokens too large"):
        await make()(request())
    assert len(server.requests) == 1


async def test_slow_answer_times_out(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """An answer slower than timeout_s is a ProcessingTimeout (timeout, retriable)."""
    server.script(Reply(hang=True))
    with pytest.raises(ProcessingTimeout, match="within 0.2 s") as caught:
        await make(timeout_s=0.2)(request())
    assert caught.value.error_type == "timeout"


async def test_connection_refused_is_upstream_unavailable(sleep: RecordedSleep) -> None:
    """Nothing listening on the port: UpstreamUnavailable naming the endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again at once: nothing listens there
    settings = HttpProcessorSettings(base_url=f"http://127.0.0.1:{port}/v1")
    processor = ChatCompletionsProcessor(settings, REGISTRY, sleep=sleep)
    with pytest.raises(UpstreamUnavailable, match="cannot reach chat-completions endpoint") as caught:
        await processor(request())
    assert caught.value.error_type == "connection"
    await processor.aclose()


async def test_connection_dropped_without_answer_is_upstream_unavailable(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """A fresh connection closed before any answer is UpstreamUnavailable, not retried blindly."""
    server.script(Reply(drop=True))
    with pytest.raises(UpstreamUnavailable, match="without answering"):
        await make()(request())
    assert len(server.requests) == 1


async def test_stale_keep_alive_connection_is_replaced(
    server: FakeOpenAI, make: Callable[..., ChatCompletionsProcessor]
) -> None:
    """If a reused idle connection turns out closed, the request is sent once more on a new one."""
    processor = make()
    await processor(request("one"))
    server.script(Reply(drop=True))  # the server drops the idle connection as it is reused
    assert (await processor(request("two"))).content == "[m1] two"
    assert processor.connections_opened == 2
    assert [r.json["messages"][1]["content"] for r in server.requests] == ["one", "two", "two"]


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
    assert processor.connections_opened == (2 if reply.close else 1)


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


async def test_loaded_http_processor_uses_resolved_key(server: FakeOpenAI) -> None:
    """Through load_processor, the key config.py resolved is sent, and HRV is added to the answer."""
    settings = HttpProcessorSettings(base_url=server.base_url, api_key="sk-resolved")
    processor = load_processor(ProcessorSpec(name="http", http=settings))
    output = await processor.call_async(request())
    assert output.hrv_vector is not None
    assert server.requests[0].headers["authorization"] == "Bearer sk-resolved"
    await processor.aclose()


def test_invalid_base_url_is_a_config_error() -> None:
    """A base_url that is not an absolute http(s) URL is rejected at load, naming the setting."""
    with pytest.raises(ConfigError, match="processor.http.base_url"):
        load_processor(ProcessorSpec(name="http", http=HttpProcessorSettings(base_url="localhost:8000")))


# --- https --------------------------------------------------------------------------------


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
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    yield cert, key


async def test_https_endpoint(certificate: tuple[Path, Path], sleep: RecordedSleep) -> None:
    """An https base_url speaks TLS and verifies the server certificate."""
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with FakeOpenAI(ssl_context=server_context) as server:
        settings = HttpProcessorSettings(base_url=server.base_url)
        processor = ChatCompletionsProcessor(settings, REGISTRY, sleep=sleep, ssl_context=client_context)
        assert server.base_url.startswith("https://")
        assert (await processor(request("tls"))).content == "[default] tls"
        await processor.aclose()


async def test_https_rejects_untrusted_certificate(
    certificate: tuple[Path, Path], sleep: RecordedSleep
) -> None:
    """A certificate the client does not trust fails as UpstreamUnavailable."""
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    async with FakeOpenAI(ssl_context=server_context) as server:
        processor = ChatCompletionsProcessor(
            HttpProcessorSettings(base_url=server.base_url), REGISTRY, sleep=sleep
        )
        with pytest.raises(UpstreamUnavailable, match="SSL"):
            await processor(request())
        await processor.aclose()
