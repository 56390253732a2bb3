"""Tests for stream_service.observability.endpoints: /metrics, /healthz, /readyz over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from stream_service.observability.endpoints import OpsServer
from stream_service.observability.metrics import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Readiness:
    def __init__(self) -> None:
        self.ready = False
        self.detail = "waiting for partition assignment"

    def __call__(self) -> tuple[bool, str]:
        return self.ready, self.detail


async def _request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


async def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    return await _request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def server(clock: FakeClock, readiness: Readiness) -> AsyncIterator[tuple[OpsServer, int, Metrics]]:
    metrics = Metrics(CollectorRegistry())
    ops = OpsServer("127.0.0.1", 0, metrics, readiness, clock=clock)
    port = await ops.start()
    yield ops, port, metrics
    await ops.close()


async def test_metrics_route_serves_prometheus_text(server: tuple[OpsServer, int, Metrics]) -> None:
    """GET /metrics returns the registry in the Prometheus text format."""
    _ops, port, metrics = server
    metrics.commits_total.inc(3)
    status, headers, body = await _get(port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert int(headers["content-length"]) == len(body)
    assert b"stream_service_commits_total 3.0" in body


async def test_readyz_follows_the_readiness_callable(
    server: tuple[OpsServer, int, Metrics], readiness: Readiness
) -> None:
    """GET /readyz is 503 with the detail while not ready, then 200 once ready."""
    _ops, port, _metrics = server
    status, _headers, body = await _get(port, "/readyz")
    assert status == 503
    assert json.loads(body) == {"status": "not ready", "detail": "waiting for partition assignment"}
    readiness.ready, readiness.detail = True, "3 partitions assigned"
    status, _headers, body = await _get(port, "/readyz?verbose=1")
    assert status == 200
    assert json.loads(body)["detail"] == "3 partitions assigned"


async def test_readyz_is_503_when_the_check_raises(clock: FakeClock) -> None:
    """A readiness callable that raises makes /readyz answer 503, not crash the server."""

    def broken() -> tuple[bool, str]:
        raise RuntimeError("consumer gone")

    ops = OpsServer("127.0.0.1", 0, Metrics(CollectorRegistry()), broken, clock=clock)
    port = await ops.start()
    try:
        status, _headers, body = await _get(port, "/readyz")
    finally:
        await ops.close()
    assert status == 503
    assert "consumer gone" in json.loads(body)["detail"]


async def test_healthz_goes_stale_without_heartbeats(
    server: tuple[OpsServer, int, Metrics], clock: FakeClock
) -> None:
    """/healthz is 200 while the last beat is recent and 503 once it is older than 10 s."""
    ops, port, _metrics = server
    status, _headers, body = await _get(port, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    clock.now += 10.5
    status, _headers, body = await _get(port, "/healthz")
    assert status == 503
    assert json.loads(body)["heartbeat_age_s"] == pytest.approx(10.5)
    ops.beat(clock.now, lag_s=0.0)
    status, _headers, _body = await _get(port, "/healthz")
    assert status == 200


async def test_heartbeat_measures_loop_lag(clock: FakeClock) -> None:
    """heartbeat() records how late each wake-up was; a lag over the limit makes /healthz 503."""
    woke = asyncio.Event()
    oversleep_s = [0.0, 7.0]

    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds + oversleep_s.pop(0)
        if not oversleep_s:
            woke.set()
            await asyncio.Event().wait()  # park the heartbeat until it is cancelled

    metrics = Metrics(CollectorRegistry())
    ops = OpsServer("127.0.0.1", 0, metrics, lambda: (True, ""), clock=clock, sleep=fake_sleep)
    task = asyncio.create_task(ops.heartbeat())
    await woke.wait()
    await asyncio.sleep(0)  # let the heartbeat record the first beat
    # The first wake-up was on time; the second overslept by 7 s but has not returned yet.
    assert ops.health() == (True, {"heartbeat_age_s": 7.5, "loop_lag_s": 0.0})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ops.beat(clock.now, lag_s=7.0)
    healthy, figures = ops.health()
    assert not healthy and figures["loop_lag_s"] == 7.0
    assert metrics.registry.get_sample_value("stream_service_event_loop_lag_seconds") == 7.0


async def test_unknown_routes_methods_and_garbage(server: tuple[OpsServer, int, Metrics]) -> None:
    """Unknown paths are 404, POST is 405, a malformed request line is 400, HEAD has no body."""
    _ops, port, _metrics = server
    assert (await _get(port, "/nope"))[0] == 404
    assert (await _request(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
    assert (await _request(port, b"garbage\r\n\r\n"))[0] == 400
    status, headers, body = await _request(port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


async def test_close_is_idempotent(clock: FakeClock) -> None:
    """close() before start and twice after start does nothing harmful."""
    ops = OpsServer("127.0.0.1", 0, Metrics(CollectorRegistry()), lambda: (True, ""), clock=clock)
    await ops.close()
    await ops.start()
    await ops.close()
    await ops.close()
