"""The Kafka clients of the service and of the operator tools, built from one :class:`Config`.

Every client (the service's consumer and producer, the tools' consumers, producers and admin
clients) connects with :func:`connection_options`, so a security setting is written once. The
pass-through options of ``kafka.client_options`` (``-X``) reach each client whose class takes
them (:mod:`stream_service.client_options`); what the service sets itself always wins.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from stream_service import fetch_records
from stream_service.client_options import ClientKind, for_client
from stream_service.oauth import load_token_provider
from stream_service.settings import Config

__all__ = [
    "client_options",
    "close_producer",
    "connection_options",
    "for_client",
    "max_message_bytes",
    "service_consumer",
    "service_producer",
    "start_producer",
    "start_transactional",
    "tools_options",
    "transactional_producer",
]

PRODUCER_BATCH_BYTES = 256 * 1024  # per-partition produce batch; the 16 KiB default caps throughput
PRODUCER_STOP_TIMEOUT_S = 5.0  # a graceful stop (flush) gets this long, then the producer is torn down
TOOLS_CLIENT_SUFFIX = "-tools"  # the tools' client.id, so broker logs tell them from the service


def connection_options(config: Config) -> dict[str, Any]:
    """Connection and security options shared by the consumer, the producer and the admin client."""
    k = config.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": k.bootstrap_servers,
        "client_id": k.client_id,
        "security_protocol": k.security_protocol,
        "request_timeout_ms": k.request_timeout_ms,
    }
    if k.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=k.ssl_cafile, certfile=k.ssl_certfile, keyfile=k.ssl_keyfile, password=k.ssl_password
        )
    if k.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = k.sasl_mechanism
        if k.sasl_mechanism == "OAUTHBEARER" and k.sasl_oauth_token_provider is not None:
            options["sasl_oauth_token_provider"] = load_token_provider(k.sasl_oauth_token_provider)
        else:
            options["sasl_plain_username"] = k.sasl_username
            options["sasl_plain_password"] = str(k.sasl_password) if k.sasl_password is not None else None
    return options


def client_options(config: Config, kind: ClientKind) -> dict[str, Any]:
    """The ``kafka.client_options`` entries (already checked by the loader) a ``kind`` client takes."""
    return for_client(kind, config.kafka.client_options)


def tools_options(config: Config) -> dict[str, Any]:
    """:func:`connection_options` with the tools' own ``client_id``, ``kafka.compression_type`` and
    every ``kafka.client_options`` entry; build each client with :func:`for_client`, which keeps
    what its class takes. The tools' consumers read any record too (see
    :mod:`stream_service.fetch_records`)."""
    fetch_records.install()
    options: dict[str, Any] = dict(config.kafka.client_options)
    if config.kafka.compression_type != "none":
        options["compression_type"] = config.kafka.compression_type
    options.update(connection_options(config))
    options["client_id"] = config.kafka.client_id + TOOLS_CLIENT_SUFFIX
    return options


def _compression(config: Config) -> str | None:
    return None if config.kafka.compression_type == "none" else config.kafka.compression_type


def service_consumer(config: Config) -> AIOKafkaConsumer:
    """The group member: manual commits, reads a new group's backlog from the start, and only
    committed data of transactional producers. No fetched record can stop it (see
    :mod:`stream_service.fetch_records`)."""
    fetch_records.install()
    k = config.kafka
    return AIOKafkaConsumer(
        **for_client(
            "consumer",
            client_options(config, "consumer"),
            group_id=config.topics.group_id,
            group_instance_id=k.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset=k.auto_offset_reset,
            session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=k.heartbeat_interval_ms,
            max_poll_interval_ms=k.max_poll_interval_ms,
            rebalance_timeout_ms=k.max_poll_interval_ms,
            fetch_max_bytes=k.fetch_max_bytes,
            max_partition_fetch_bytes=k.max_partition_fetch_bytes,
            isolation_level="read_committed",
            **connection_options(config),
        )
    )


def service_producer(config: Config) -> AIOKafkaProducer:
    """An idempotent producer with acks=all: an acknowledged output is durably written."""
    return AIOKafkaProducer(**_producer_options(config))


def producer_batch_bytes(config: Config) -> int:
    """The largest batch our producers build: a batch must fit one request (send_batch does not
    check that)."""
    return min(PRODUCER_BATCH_BYTES, config.kafka.producer_max_request_size)


def _producer_options(config: Config, **extra: Any) -> dict[str, Any]:
    k = config.kafka
    return for_client(
        "producer",
        client_options(config, "producer"),
        acks="all",
        enable_idempotence=True,
        linger_ms=k.producer_linger_ms,
        max_request_size=k.producer_max_request_size,
        max_batch_size=producer_batch_bytes(config),
        compression_type=_compression(config),
        **extra,
        **connection_options(config),
    )


def transactional_producer(config: Config, transactional_id: str) -> AIOKafkaProducer:
    """An exactly-once producer: :func:`service_producer` with a transactional id (starting it
    fences every earlier producer of that id and aborts its open transaction)."""
    return AIOKafkaProducer(**_producer_options(config, transactional_id=transactional_id))


async def start_transactional(config: Config, transactional_id: str) -> AIOKafkaProducer:
    """A new :func:`transactional_producer`, started (closed again if it cannot start)."""
    return await _started(config, transactional_producer(config, transactional_id))


async def max_message_bytes(config: Config, topics: list[str]) -> int | None:
    """The smallest ``max.message.bytes`` of the given topics, or None when it cannot be read."""
    admin = AIOKafkaAdminClient(
        **for_client("admin", client_options(config, "admin"), **connection_options(config))
    )
    try:
        async with asyncio.timeout(config.kafka.startup_timeout_s):
            await admin.start()
            responses = await admin.describe_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None})
                    for topic in topics
                ]
            )
    except (KafkaError, OSError, TimeoutError):
        return None
    finally:
        await admin.close()
    limits = [
        int(entry[1])
        for response in responses
        for resource in response.resources
        for entry in resource[4]
        if entry[0] == "max.message.bytes" and entry[1] is not None
    ]
    return min(limits) if limits else None


async def start_producer(config: Config) -> AIOKafkaProducer:
    """A new :func:`service_producer`, started; one that fails to start is closed, not leaked."""
    return await _started(config, service_producer(config))


async def _started(config: Config, producer: AIOKafkaProducer) -> AIOKafkaProducer:
    try:
        async with asyncio.timeout(config.kafka.startup_timeout_s):
            await producer.start()
    except BaseException:
        await close_producer(producer)
        raise
    return producer


async def close_producer(producer: Any, timeout_s: float = PRODUCER_STOP_TIMEOUT_S) -> None:
    """Stop ``producer``: flush within ``timeout_s``, else tear it down so that nothing of it runs on.

    aiokafka's ``stop()`` waits for the flush of every pending batch; with the brokers down it
    waits until cancelled and leaves its sender task running, which may deliver the batches it
    holds much later (duplicates of outputs already sent again by a replacement). Here the sender
    is cancelled, its batches are failed and its connections closed.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await producer.stop()
    except (KafkaError, OSError, TimeoutError):
        pass
    else:
        return
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=timeout_s)
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is not None:
        accumulator.fail_all(KafkaError("the producer was closed"))
    client = getattr(producer, "client", None)
    if client is not None:
        try:
            async with asyncio.timeout(timeout_s):
                await client.close()
        except (KafkaError, OSError, TimeoutError):
            pass  # its sockets go with the object
