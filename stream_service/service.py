"""Lifecycle: startup -> run -> drain -> shutdown, with signals and one TaskGroup owning every task."""

from __future__ import annotations

import asyncio
import signal
from contextlib import suppress
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from stream_service.config import Config, redacted
from stream_service.engine import Engine
from stream_service.errors import StartupError
from stream_service.observability import audit
from stream_service.observability.endpoints import OpsServer
from stream_service.observability.metrics import Metrics
from stream_service.pipeline.decode import RequestDecoder
from stream_service.pipeline.execute import ProcessExecutor, build_executor
from stream_service.pipeline.rebalance import DrainingRebalanceListener
from stream_service.pipeline.retry import RetryPolicy
from stream_service.processors.cache import ResultCache
from stream_service.processors.loader import ProcessorSpec, load_processor

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_STARTUP = 2
EXIT_FORCED = 130
PRODUCER_BATCH_BYTES = 256 * 1024  # per-partition produce batch; the 16 KiB default caps throughput


def kafka_client_options(config: Config) -> dict[str, Any]:
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
        options["sasl_plain_username"] = k.sasl_username
        options["sasl_plain_password"] = str(k.sasl_password) if k.sasl_password is not None else None
    return options


class Service:
    """One stream_service instance: a consumer-group member that answers every request it consumes.

    Guarantees: on SIGTERM or SIGINT it stops consuming, drains in-flight work within
    ``delivery.shutdown_timeout_s``, flushes the producer, commits, and :meth:`run` returns 0. A
    second signal cancels :meth:`run` without draining (the CLI exits 130; ``forced`` is true);
    uncommitted work is then redelivered.
    Startup failures (broker unreachable, topic missing, processor not loadable) return 2 with
    one clear log line instead of a traceback loop.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.log = structlog.get_logger("stream_service.service")
        self._stop = asyncio.Event()
        self._signals = 0
        self._main: asyncio.Task[Any] | None = None
        self._rebalancing = False
        self._started = False
        self.ops_port: int | None = None
        self.engine: Engine | None = None

    # ----------------------------------------------------------------- signals

    @property
    def forced(self) -> bool:
        """True once a second stop request cancelled the run."""
        return self._signals > 1

    def request_stop(self, reason: str = "requested") -> None:
        """Begin a graceful shutdown (what the first SIGTERM does)."""
        self._signals += 1
        if self._signals == 1:
            self.log.info("service.stopping", reason=reason)
            self._stop.set()
        elif self._main is not None:
            self.log.warning("service.forced_exit", reason=reason)
            self._main.cancel()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> dict[signal.Signals, Any]:
        """Handle SIGTERM/SIGINT on the loop; return the previous handlers, to restore at exit."""
        previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread / platform
                before = signal.getsignal(sig)
                loop.add_signal_handler(sig, self.request_stop, sig.name)
                previous[sig] = before
        return previous

    # ----------------------------------------------------------------- run

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        installed = self._install_signals(loop)
        try:
            return await self._run()
        except StartupError as exc:
            self.log.error("service.startup_failed", error=str(exc))  # noqa: TRY400 - no traceback wanted
            return EXIT_STARTUP
        finally:
            for sig, before in installed.items():
                loop.remove_signal_handler(sig)
                if before is not None:
                    signal.signal(sig, before)

    async def _run(self) -> int:
        cfg = self.config
        spec = ProcessorSpec.from_settings(cfg.processor)
        processor = load_processor(spec)  # PluginError is a startup error too
        metrics = Metrics(enabled=cfg.observability.metrics)
        consumer = AIOKafkaConsumer(
            group_id=cfg.topics.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=cfg.kafka.session_timeout_ms,
            heartbeat_interval_ms=cfg.kafka.heartbeat_interval_ms,
            max_poll_interval_ms=cfg.kafka.max_poll_interval_ms,
            rebalance_timeout_ms=cfg.kafka.max_poll_interval_ms,
            fetch_max_bytes=cfg.kafka.fetch_max_bytes,
            max_partition_fetch_bytes=cfg.kafka.max_partition_fetch_bytes,
            isolation_level="read_committed",
            **kafka_client_options(cfg),
        )
        producer = self._new_producer()

        async def renew_producer() -> Any:
            fresh = self._new_producer()
            await fresh.start()
            return fresh

        executor = build_executor(
            cfg.executor.kind,
            processor=processor,
            spec=spec,
            retry=RetryPolicy.from_settings(cfg.retry),
            timeout_s=cfg.executor.request_timeout_s,
            concurrency=cfg.executor.concurrency,
            workers=cfg.executor.workers,
        )
        cache = (
            ResultCache(max_entries=cfg.cache.max_entries, ttl_s=cfg.cache.ttl_s)
            if cfg.cache.enabled
            else None
        )
        decoder = RequestDecoder(
            max_prompt_bytes=cfg.limits.max_prompt_bytes,
            max_message_bytes=cfg.limits.max_message_bytes,
            default_encoding=cfg.delivery.encoding,
            known_profiles=processor.profiles,
        )
        engine = self.engine = Engine(
            cfg,
            consumer=consumer,
            producer=producer,
            executor=executor,
            decoder=decoder,
            metrics=metrics,
            cache=cache,
            renew_producer=renew_producer,
        )
        ops = None
        if cfg.observability.metrics_port is not None:
            ops = OpsServer(
                cfg.observability.metrics_host, cfg.observability.metrics_port, metrics, self.readiness
            )
        try:
            await self._start_clients(consumer, producer)
            if isinstance(executor, ProcessExecutor):
                await executor.warm_up()
            if ops is not None:
                self.ops_port = await ops.start()
                self.log.info("ops.listening", port=self.ops_port)
            consumer.subscribe([cfg.topics.input], listener=_ReadinessListener(self, engine))
            audit.service_started(self.log, redacted(cfg))
            self._started = True
            return await self._serve(engine, ops)
        finally:
            self._started = False
            await self._close(consumer, engine.publisher.producer, executor, ops)

    async def _serve(self, engine: Engine, ops: OpsServer | None) -> int:
        cfg = self.config
        async with asyncio.TaskGroup() as tasks:
            loops = engine.start(tasks)
            if ops is not None:
                loops.append(tasks.create_task(ops.heartbeat(), name="heartbeat"))
            stop = tasks.create_task(self._stop.wait(), name="stop-signal")
            # Either a signal, or a loop dying (its exception cancels the group and surfaces here).
            await stop
            drained = await engine.drain(cfg.delivery.shutdown_timeout_s)
            for task in loops:
                task.cancel()
            engine.cancel_in_flight()
        audit.service_stopped(
            self.log,
            "signal" if self._signals else "requested",
            {"drained": drained, "in_flight_left": engine.tracked},
        )
        return EXIT_OK

    def _new_producer(self) -> Any:
        """An idempotent producer with acks=all: an acknowledged output is durably written."""
        cfg = self.config
        return AIOKafkaProducer(
            acks="all",
            enable_idempotence=True,
            linger_ms=cfg.kafka.producer_linger_ms,
            max_request_size=cfg.kafka.producer_max_request_size,
            max_batch_size=PRODUCER_BATCH_BYTES,
            **kafka_client_options(cfg),
        )

    async def _start_clients(self, consumer: Any, producer: Any) -> None:
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.kafka.startup_timeout_s):
                await producer.start()
                await consumer.start()
                topics = await consumer.topics()
        except (KafkaError, OSError, TimeoutError) as exc:
            raise StartupError(
                f"cannot reach Kafka at {cfg.kafka.bootstrap_servers} "
                f"within {cfg.kafka.startup_timeout_s:g} s "
                f"({type(exc).__name__}: {exc}); check kafka.bootstrap_servers and the security settings"
            ) from exc
        missing = [t for t in (cfg.topics.input, cfg.topics.results, cfg.topics.errors) if t not in topics]
        if missing:
            raise StartupError(
                f"topic(s) {', '.join(missing)} do not exist on {cfg.kafka.bootstrap_servers}; create them "
                "(auto-creation is not relied on) or fix topics.input/results/errors"
            )

    async def _close(self, consumer: Any, producer: Any, executor: Any, ops: OpsServer | None) -> None:
        # Each step is bounded so a dead broker cannot hold the exit forever.
        for step in (consumer.stop, producer.stop, executor.aclose) + ((ops.close,) if ops else ()):
            try:
                async with asyncio.timeout(10):
                    await step()
            except (KafkaError, OSError, TimeoutError) as exc:
                self.log.warning(
                    "service.close_step_failed", step=getattr(step, "__qualname__", "?"), error=str(exc)
                )

    def readiness(self) -> tuple[bool, str]:
        """Ready when connected and not in the middle of a rebalance."""
        if not self._started:
            return False, "starting"
        if self._rebalancing:
            return False, "rebalancing"
        engine = self.engine
        assigned = len(engine.states) if engine is not None else 0
        return True, f"assigned {assigned} partitions"


class _ReadinessListener(DrainingRebalanceListener):
    """The draining listener, also telling readiness when a rebalance is in progress."""

    def __init__(self, service: Service, engine: Engine) -> None:
        super().__init__(engine, service.config.delivery.drain_timeout_s)
        self._service = service

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self._service._rebalancing = True
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        await super().on_partitions_assigned(assigned)
        self._service._rebalancing = False
