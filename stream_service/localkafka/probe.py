"""Is a node up? TCP and Kafka-protocol probes, callable from any thread, with or without a loop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

T = TypeVar("T")

_CONNECT_TIMEOUT_S = 0.5
_REQUEST_TIMEOUT_MS = 5_000


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in a helper thread.

    Works whether or not the calling thread already runs a loop (``asyncio.run`` alone would refuse).
    """
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            errors.append(exc)

    thread = threading.Thread(target=target, name="localkafka-probe", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def admin_call(bootstrap: str, call: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``call(admin)`` with a short-lived ``AIOKafkaAdminClient`` (aiokafka is untyped, hence Any)."""

    async def run() -> T:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=_REQUEST_TIMEOUT_MS)
        try:
            await admin.start()
            return await call(admin)
        finally:
            await admin.close()

    return run_coroutine(run)


def listed_brokers(bootstrap: str) -> set[int]:
    """Node ids of the unfenced brokers that a metadata request to ``bootstrap`` returns."""
    info: dict[str, Any] = admin_call(bootstrap, lambda admin: admin.describe_cluster())
    return {int(broker["node_id"]) for broker in info["brokers"]}


def out_of_sync(bootstrap: str, topics: Sequence[str]) -> list[str]:
    """Partitions of ``topics`` without a leader or with a shrunk ISR (or topics not found); empty if fine."""
    described: list[dict[str, Any]] = admin_call(bootstrap, lambda admin: admin.describe_topics(list(topics)))
    lagging = [
        f"{t['topic']}[{p['partition']}] leader={p['leader']} isr={p['isr']} replicas={p['replicas']}"
        for t in described
        for p in t["partitions"]
        if p["leader"] < 0 or sorted(p["isr"]) != sorted(p["replicas"])
    ]
    found = {t["topic"] for t in described if t["partitions"]}
    return lagging + [f"{topic}: not found" for topic in topics if topic not in found]
