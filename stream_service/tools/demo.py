"""``stream-service demo``: the whole service end to end, on one machine, in one command.

With no broker configured it starts a local Kafka broker (:mod:`stream_service.localkafka`);
with ``--bootstrap-servers`` (or ``KAFKA_BOOTSTRAP_SERVERS``, or a config file) it uses that one.
Then it creates fresh topics, produces a realistic mix of requests (several tenants with uneven
shares, the four built-in profiles, some duplicates, some bad input) while running the service
in-process behind a live progress line, stops the service once every request is answered, and
prints the report and the reconcile verdict. Everything it started is stopped before it exits,
on Ctrl-C or SIGTERM too.

Exit status: 0 when every request has an output; 1 when some are missing (or the service did
not stop cleanly); 2 on configuration or connection problems; 130 when interrupted.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import IO, Any, NamedTuple, Protocol

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from stream_service.clients import for_client, tools_options
from stream_service.config import Config
from stream_service.errors import ToolError
from stream_service.exit_codes import ExitCode
from stream_service.localkafka import LocalKafka
from stream_service.service import Service
from stream_service.tools.demo_interrupts import Interrupts
from stream_service.tools.outputs import read_outputs
from stream_service.tools.produce import DEFAULT_PROFILES, ProduceStats, produce_requests
from stream_service.tools.progress import Progress, ProgressLine, RateMeter
from stream_service.tools.reconcile import Verdict, reconcile_topics
from stream_service.tools.reconcile import render_text as render_verdict
from stream_service.tools.report_model import Report
from stream_service.tools.report_render import render_text as render_report
from stream_service.tools.report_stats import ReportBuilder
from stream_service.tools.scan import Isolation

__all__ = [
    "Broker",
    "DemoOptions",
    "DemoOutcome",
    "DemoTopics",
    "run_demo",
    "service_config",
    "tenant_mix",
]

DEFAULT_COUNT = 20_000
DEFAULT_TENANTS = 4
DUPLICATE_RATIO = 0.05  # re-sent prompts under new ids: answered from the result cache
BAD_RATIO = 0.01  # five kinds of bad records: answered with error records
PRIORITIES = (0, 0, 0, 1, 2)
PARTITIONS = {"input": 8, "results": 8, "errors": 1}
BASE_TIMEOUT_S = 240.0
_TICK_S = 0.25  # progress refresh and completion check
_TOPIC_READY_TIMEOUT_S = 30.0


class Broker(Protocol):
    """What the demo needs of a broker it starts itself (:class:`LocalKafka`; a fake in tests)."""

    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def started_in_s(self) -> float | None: ...
    def start(self) -> object: ...  # blocking
    def stop(self) -> None: ...  # blocking; waits for a start in progress, then stops


def _local_broker() -> Broker:
    return LocalKafka(nodes=1)


class DemoOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What to run: how many requests, how fast, for how many tenants, and for how long at most."""

    count: int = DEFAULT_COUNT
    rate: float = 0.0  # requests per second; 0 = as fast as possible
    tenants: int = DEFAULT_TENANTS
    timeout_s: float | None = None  # None: effective_timeout_s()
    seed: int = 0
    keep_broker: bool = False

    def effective_timeout_s(self) -> float:
        """The given timeout, else a base allowance plus the time ``rate`` needs to send everything."""
        if self.timeout_s is not None:
            return self.timeout_s
        return BASE_TIMEOUT_S + (self.count / self.rate if self.rate > 0 else 0.0)


class DemoTopics(NamedTuple):
    input: str
    results: str
    errors: str
    group_id: str

    @classmethod
    def fresh(cls, suffix: str | None = None) -> DemoTopics:
        """Names no earlier run used, so a demo never reads another run's records."""
        s = suffix or uuid.uuid4().hex[:12]
        return cls(f"demo-requests-{s}", f"demo-results-{s}", f"demo-errors-{s}", f"demo-{s}")


class DemoOutcome(msgspec.Struct, kw_only=True):
    """What a run did; ``exit_code`` is the command's exit status."""

    exit_code: int = ExitCode.USAGE
    bootstrap: str | None = None
    topics: DemoTopics | None = None
    produced: ProduceStats | None = None
    service_exit: int | None = None  # None: the service never ran to completion
    answered: int = 0  # results + errors published, from the service's counters
    report: Report | None = None
    verdict: Verdict | None = None
    interrupted: bool = False
    timed_out: bool = False


def tenant_mix(count: int) -> tuple[list[str], list[float]]:
    """``count`` tenants with uneven shares: weights count, count-1, ..., 1 (4 tenants: 40/30/20/10 %)."""
    return [f"tenant-{i}" for i in range(count)], [float(count - i) for i in range(count)]


def service_config(base: Config, bootstrap: str, topics: DemoTopics) -> Config:
    """``base`` pointed at the demo's broker and topics, HRV on, metrics counted but not served."""
    replace = msgspec.structs.replace
    return replace(
        base,
        kafka=replace(base.kafka, bootstrap_servers=bootstrap),
        topics=replace(
            base.topics,
            input=topics.input,
            results=topics.results,
            errors=topics.errors,
            group_id=topics.group_id,
        ),
        processor=replace(base.processor, hrv=True),
        # The progress line reads the counters; no port is opened (two demos never collide).
        observability=replace(base.observability, metrics=True, metrics_port=None, log_level="warning"),
    )


def read_counters(registry: CollectorRegistry, results_topic: str, errors_topic: str) -> tuple[int, int, int]:
    """(consumed, results published, errors published) from the service's metrics registry."""
    consumed = results = errors = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "stream_service_consumed_total":
                consumed = sample.value
            elif sample.name == "stream_service_published_total":
                topic = sample.labels.get("topic")
                if topic == results_topic:
                    results = sample.value
                elif topic == errors_topic:
                    errors = sample.value
    return int(consumed), int(results), int(errors)


async def create_topics(options: Mapping[str, Any], topics: DemoTopics) -> None:
    """Create the three topics and wait until every partition has a leader."""
    names = {"input": topics.input, "results": topics.results, "errors": topics.errors}
    admin = AIOKafkaAdminClient(**for_client("admin", options))
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(names[k], n, 1) for k, n in PARTITIONS.items()])
        failed = [(name, code) for name, code, *_ in response.topic_errors if code != 0]
        if failed:
            raise ToolError(f"creating topics failed (Kafka error codes): {failed}")
        async with asyncio.timeout(_TOPIC_READY_TIMEOUT_S):
            while True:
                described = await admin.describe_topics(list(names.values()))
                leaders = [p["leader"] for t in described for p in t["partitions"]]
                if len(leaders) == sum(PARTITIONS.values()) and all(leader >= 0 for leader in leaders):
                    return
                await asyncio.sleep(0.05)  # metadata has no change notification: poll it briefly
    finally:
        await admin.close()


async def _service_run(service: Service, interrupts: Interrupts | None) -> int:
    try:
        return await service.run()
    finally:
        if interrupts is not None:
            interrupts.install()  # Service.run removed its signal handlers, and ours with them


async def _serve(
    config: Config,
    options: DemoOptions,
    topics: DemoTopics,
    outcome: DemoOutcome,
    progress: ProgressLine,
    interrupts: Interrupts | None,
    clock: Callable[[], float],
) -> None:
    """Run the service while producing; stop it once every request is answered or time runs out."""
    service = Service(config)
    tenants, weights = tenant_mix(options.tenants)
    meter = RateMeter()
    started = clock()
    deadline = started + options.effective_timeout_s()
    requested = False

    def snapshot() -> Progress:
        consumed = results = errors = 0
        if service.metrics is not None:
            consumed, results, errors = read_counters(service.metrics.registry, topics.results, topics.errors)
        now = clock()
        meter.observe(now, results + errors)
        return Progress(options.count, consumed, results, errors, now - started)

    produce = functools.partial(
        produce_requests,
        tools_options(config),
        topics.input,
        options.count,
        rate=options.rate,
        tenants=tenants,
        tenant_weights=weights,
        profiles=DEFAULT_PROFILES,
        priorities=PRIORITIES,
        duplicate_ratio=DUPLICATE_RATIO,
        bad_ratio=BAD_RATIO,
        seed=options.seed,
        id_prefix=f"{topics.group_id}-",
    )
    producer: asyncio.Task[ProduceStats] | None = None
    async with asyncio.TaskGroup() as tasks:
        service_task = tasks.create_task(_service_run(service, interrupts), name="demo-service")
        while not service_task.done():
            now = snapshot()
            progress.update(now, meter.rate())
            if producer is None and not requested and service.readiness()[0]:
                # Load starts once the service is up: one that cannot start leaves no producer behind.
                producer = tasks.create_task(produce(), name="demo-producer")
            elif producer is not None and outcome.produced is None and _succeeded(producer):
                outcome.produced = stats = producer.result()
                progress.note(
                    f"produced {stats.sent:,} requests in {stats.elapsed_s:.1f} s: {stats.valid:,} valid, "
                    f"{stats.duplicates:,} duplicates, {sum(stats.bad.values()):,} bad"
                )
            if not requested:
                complete = outcome.produced is not None and now.answered >= options.count
                outcome.timed_out = not complete and clock() >= deadline
                if complete or outcome.timed_out:
                    requested = True
                    service.request_stop("demo complete" if complete else "demo timeout")
            # A periodic refresh, not a synchronisation: it also wakes as soon as the service ends.
            await asyncio.wait({service_task}, timeout=_TICK_S)
        if producer is not None:
            producer.cancel()  # still sending only after a timeout or a signal
        outcome.service_exit = service_exit = service_task.result()
        outcome.interrupted = not requested and service_exit != ExitCode.USAGE
        final = snapshot()
        outcome.answered = final.answered
        progress.finish(final, final.answered / final.elapsed_s if final.elapsed_s > 0 else 0.0)


def _succeeded(task: asyncio.Task[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


async def run_demo(
    base: Config,
    options: DemoOptions,
    *,
    bootstrap: str | None = None,
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
    handle_signals: bool = False,
    clock: Callable[[], float] = time.monotonic,
    broker: Callable[[], Broker] = _local_broker,
) -> DemoOutcome:
    """Run the demo against ``bootstrap``, or a ``broker()`` started (and stopped) here when None.

    The report and the verdict go to ``out``; progress and notes go to ``err``. With
    ``handle_signals`` SIGINT/SIGTERM stop the run gracefully (exit 130). Raises ConfigError,
    PluginError, LocalKafkaError, ToolError or KafkaError when the run cannot start or finish.
    """
    progress = ProgressLine(err)
    say = progress.note
    task = asyncio.current_task()
    interrupts = Interrupts(task, say) if handle_signals and task is not None else None
    outcome = DemoOutcome(bootstrap=bootstrap)
    kafka: Broker | None = None
    keeping = False
    if interrupts is not None:
        interrupts.install()
    try:
        if bootstrap is None:
            say("starting a local Kafka broker (the first run also downloads its jars, once)")
            kafka = broker()
            await asyncio.to_thread(kafka.start)
            outcome.bootstrap = bootstrap = kafka.bootstrap_servers
            say(f"Kafka ready at {bootstrap} in {kafka.started_in_s or 0.0:.1f} s")
        await _steps(base, options, bootstrap, outcome, progress, interrupts, out, clock)
        if options.keep_broker and kafka is None:
            say("--keep-broker: nothing to keep, the demo did not start the broker")
        elif options.keep_broker and interrupts is not None and outcome.topics and outcome.verdict:
            keeping = True
            say(
                f"the broker keeps running at {bootstrap} until Ctrl-C; try e.g. "
                f"stream-service report --bootstrap-servers {bootstrap} "
                f"--results-topic {outcome.topics.results} --errors-topic {outcome.topics.errors}"
            )
            await asyncio.Event().wait()  # until a signal cancels this task
    except asyncio.CancelledError:
        if interrupts is None or not interrupts.signals or task is None:
            raise
        task.uncancel()  # our own signal handler cancelled us: report it as an exit status
        if not keeping:
            outcome.interrupted = True
            outcome.exit_code = ExitCode.INTERRUPTED
    finally:
        progress.end()
        try:
            if kafka is not None:
                say("stopping the local Kafka broker")
                # Shielded: a further Ctrl-C must not abandon the stop half way (asyncio.run
                # still waits for the thread, and the JVM dies with this process in any case).
                # Cancelled during start, this waits for the start to finish, then stops.
                await asyncio.shield(asyncio.to_thread(kafka.stop))
        finally:
            if interrupts is not None:
                interrupts.remove()
    return outcome


async def _steps(
    base: Config,
    options: DemoOptions,
    bootstrap: str,
    outcome: DemoOutcome,
    progress: ProgressLine,
    interrupts: Interrupts | None,
    out: IO[str],
    clock: Callable[[], float],
) -> None:
    """Topics, load and service, then the report: everything between starting and stopping a broker."""
    say = progress.note
    began = clock()
    outcome.topics = topics = DemoTopics.fresh()
    config = service_config(base, bootstrap, topics)
    await create_topics(tools_options(config), topics)
    say(
        f"topics {topics.input} ({PARTITIONS['input']} partitions), {topics.results}, {topics.errors}; "
        f"processor {config.processor.name}, executor {config.executor.kind}; "
        f"{options.count:,} requests from {options.tenants} tenants"
        + (f" at {options.rate:,.0f}/s" if options.rate > 0 else "")
    )
    try:
        await _serve(config, options, topics, outcome, progress, interrupts, clock)
    except ExceptionGroup as group:  # the TaskGroup wraps a producer or service failure
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    if outcome.interrupted:
        say("interrupted: the service drained and stopped")
        outcome.exit_code = ExitCode.INTERRUPTED
        return
    if outcome.service_exit == ExitCode.USAGE:
        say("the service could not start (see its log)")
        outcome.exit_code = ExitCode.USAGE
        return
    if outcome.timed_out:
        say(f"timed out after {options.effective_timeout_s():.0f} s: stopped the service")
    await _report(config, topics, outcome, options.count, out)
    ok = outcome.exit_code == ExitCode.OK
    say(
        f"demo {'OK' if ok else 'FAILED'}: {outcome.answered:,}/{options.count:,} requests answered, "
        f"{clock() - began:.1f} s from topic creation to verdict"
    )


async def _report(config: Config, topics: DemoTopics, outcome: DemoOutcome, count: int, out: IO[str]) -> None:
    """Print the report and the reconcile verdict; set the exit code from the verdict."""
    options = tools_options(config)
    exactly_once = config.delivery.guarantee == "exactly_once"
    isolation: Isolation = "read_committed" if exactly_once else "read_uncommitted"
    builder = ReportBuilder()
    outputs, verdict = await asyncio.gather(
        read_outputs(options, topics.results, topics.errors, builder.add, isolation=isolation),
        reconcile_topics(options, topics.input, [topics.results, topics.errors], exactly_once=exactly_once),
    )
    summary = builder.report(wall_seconds=outputs.wall_seconds)
    outcome.report = msgspec.structs.replace(summary, skipped_records=outputs.skipped)
    outcome.verdict = verdict
    out.write("\n" + render_report(outcome.report) + "\nRECONCILE\n" + render_verdict(verdict))
    out.flush()
    produced = outcome.produced.sent if outcome.produced is not None else None
    complete = verdict.ok and produced == verdict.expected == count and outcome.service_exit == ExitCode.OK
    outcome.exit_code = ExitCode.OK if complete else ExitCode.FAILED
