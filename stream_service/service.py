"""Lifecycle: startup -> run -> drain -> shutdown, with signals and one TaskGroup owning every task."""

from __future__ import annotations

import asyncio
import functools
import signal
from contextlib import suppress
from typing import Any

import structlog
from aiokafka.errors import KafkaError

from stream_service import heap
from stream_service.clients import close_producer, max_message_bytes
from stream_service.config import Config, redacted
from stream_service.errors import StartupError
from stream_service.exit_codes import ExitCode
from stream_service.loop import loop_name
from stream_service.observability import audit
from stream_service.observability.metrics import Metrics
from stream_service.pipeline.publish import RECORD_OVERHEAD_BYTES
from stream_service.pipeline.rebalance import RebalanceListener
from stream_service.wiring import ServiceParts, build_service

CLOSE_STEP_TIMEOUT_S = 10.0  # each shutdown step (consumer, producer, executor, ops server)


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
        self.parts: ServiceParts | None = None

    @property
    def metrics(self) -> Metrics | None:
        """The instance's metrics, once it is built (the demo reads its counters)."""
        return self.parts.metrics if self.parts is not None else None

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
            return ExitCode.USAGE
        finally:
            for sig, before in installed.items():
                loop.remove_signal_handler(sig)
                if before is not None:
                    signal.signal(sig, before)

    async def _run(self) -> int:
        cfg = self.config
        parts = self.parts = build_service(cfg, self.readiness)  # PluginError is a startup error too
        try:
            await self._start_clients(parts.consumer, parts.producer)
            if parts.transactions is not None:
                await self._limit_output_records(parts)
            await parts.executor.warm_up()
            if parts.ops is not None:
                self.ops_port = await parts.ops.start()
                self.log.info("ops.listening", port=self.ops_port)
            listener = RebalanceListener(
                parts.engine, cfg.delivery.drain_timeout_s, on_rebalance=self._set_rebalancing
            )
            parts.consumer.subscribe([cfg.topics.input], listener=listener)
            heap.freeze_startup()  # what start-up made lives as long as the process
            audit.service_started(self.log, redacted(cfg), event_loop=loop_name(asyncio.get_running_loop()))
            self._started = True
            return await self._serve(parts)
        finally:
            self._started = False
            await self._close(parts)

    async def _serve(self, parts: ServiceParts) -> int:
        engine = parts.engine
        async with asyncio.TaskGroup() as tasks:
            heartbeat = tasks.create_task(parts.ops.heartbeat(), name="heartbeat") if parts.ops else None
            try:
                async with engine.running(tasks, drain_timeout_s=self.config.delivery.shutdown_timeout_s):
                    # Either a signal, or a loop dying (its exception cancels the group and surfaces here).
                    await self._stop.wait()
            finally:
                if heartbeat is not None:
                    heartbeat.cancel()
        audit.service_stopped(
            self.log,
            "signal" if self._signals else "requested",
            {"drained": engine.drained, "in_flight_left": engine.ledger.tracked},
        )
        return ExitCode.OK

    def _set_rebalancing(self, rebalancing: bool) -> None:
        self._rebalancing = rebalancing

    async def _start_clients(self, consumer: Any, producer: Any | None) -> None:
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.kafka.startup_timeout_s):
                if producer is not None:  # exactly once, each partition starts its own
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

    async def _limit_output_records(self, parts: ServiceParts) -> None:
        """Exactly once, a record the broker refuses spoils its whole transaction: learn the output
        topics' limit first, so larger outputs become too_large errors before they are sent."""
        cfg = self.config
        limit = await max_message_bytes(cfg, [cfg.topics.results, cfg.topics.errors])
        transactions = parts.transactions
        assert transactions is not None
        if limit is not None:
            transactions.max_record_bytes = min(transactions.max_record_bytes, limit - RECORD_OVERHEAD_BYTES)
        self.log.info("transactions.record_limit", bytes=transactions.max_record_bytes, topics_limit=limit)

    async def _close(self, parts: ServiceParts) -> None:
        # Each step is bounded so a dead broker cannot hold the exit forever.
        steps = [parts.consumer.stop, parts.engine.parts.publisher.close, parts.executor.aclose]
        if parts.producer is not None:
            steps.insert(1, functools.partial(close_producer, parts.producer))
        if parts.ops is not None:
            steps.append(parts.ops.close)
        steps.append(parts.tracing.aclose)  # exports the last spans (a no-op with tracing off)
        for step in steps:
            try:
                async with asyncio.timeout(CLOSE_STEP_TIMEOUT_S):
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
        assigned = len(self.parts.engine.ledger.states) if self.parts is not None else 0
        return True, f"assigned {assigned} partitions"
