"""``stream-service topics create|check``: the service's three topics, made and verified in one command.

The service never relies on topic auto-creation and refuses to start when a topic is missing,
so the topics come first. ``create`` makes the missing ones and checks the existing ones
(it never alters a topic: a partition count, once keys are spread by it, is not something to
change behind an operator's back); ``check`` only checks. Both compare each topic with the
plan: partition count, replication factor, ``min.insync.replicas`` on all three, and
``retention.ms`` on the errors topic, which is usually kept longer than the results.

Exit status: 0 when every topic exists as planned, 1 when one is missing (``check``) or
differs from the plan, 2 when Kafka cannot be reached or a flag is wrong. Compose runs
``create`` as a one-shot service before the replicas start; Kubernetes runs it as an init Job
(deploy/k8s/base/topics-job.yaml).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from stream_service.clients import for_client, tools_options
from stream_service.errors import ConfigError, ToolError
from stream_service.exit_codes import ExitCode
from stream_service.settings import Config
from stream_service.tools.connection import add_connection_arguments, tool_config

__all__ = ["Finding", "TopicSpec", "compare", "ensure_topics", "plan_topics", "register"]

DEFAULT_PARTITIONS = 8
DEFAULT_REPLICATION_FACTOR = 3
DEFAULT_ERRORS_RETENTION_DAYS = 14.0
_MS_PER_DAY = 86_400_000
_TOPIC_EXISTS = 36  # Kafka's TOPIC_ALREADY_EXISTS: another caller won the race; it is checked below
_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TopicSpec:
    """What one topic should look like."""

    role: str  # input, results or errors
    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Finding:
    """What ``create``/``check`` found for one topic: ``ok``, ``created``, ``missing`` or ``differs``."""

    spec: TopicSpec
    status: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "created")


def plan_topics(
    config: Config,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    output_partitions: int | None = None,
    replication_factor: int = DEFAULT_REPLICATION_FACTOR,
    min_insync_replicas: int | None = None,
    errors_retention_days: float = DEFAULT_ERRORS_RETENTION_DAYS,
) -> list[TopicSpec]:
    """The three topics of ``config``. ``min_insync_replicas`` defaults to one less than the replication
    factor (at least 1): with RF 3, one broker may be down without stopping acks=all writes."""
    if partitions < 1 or replication_factor < 1 or (output_partitions is not None and output_partitions < 1):
        raise ToolError("partitions and replication factor must be at least 1")
    min_isr = min_insync_replicas if min_insync_replicas is not None else max(1, replication_factor - 1)
    if not 1 <= min_isr <= replication_factor:
        raise ToolError(
            f"--min-insync-replicas must be from 1 to the replication factor ({replication_factor})"
        )
    if errors_retention_days <= 0:
        raise ToolError("--errors-retention-days must be positive")
    shared = {"min.insync.replicas": str(min_isr)}
    out = output_partitions or partitions
    t = config.topics
    return [
        TopicSpec("input", t.input, partitions, replication_factor, shared),
        TopicSpec("results", t.results, out, replication_factor, shared),
        TopicSpec(
            "errors",
            t.errors,
            out,
            replication_factor,
            {**shared, "retention.ms": str(round(errors_retention_days * _MS_PER_DAY))},
        ),
    ]


def compare(
    spec: TopicSpec, partitions: Sequence[Mapping[str, Any]], configs: Mapping[str, str]
) -> list[str]:
    """How an existing topic (its described partitions and effective configs) differs from ``spec``."""
    problems: list[str] = []
    if len(partitions) != spec.partitions:
        problems.append(f"{len(partitions)} partitions, planned {spec.partitions}")
    replicas = {len(p["replicas"]) for p in partitions}
    if replicas and replicas != {spec.replication_factor}:
        shown = ",".join(str(r) for r in sorted(replicas))
        problems.append(f"replication factor {shown}, planned {spec.replication_factor}")
    for key, wanted in spec.configs.items():
        have = configs.get(key)
        if have != wanted:
            problems.append(f"{key}={have}, planned {wanted}")
    return problems


async def _describe(
    admin: Any, specs: Sequence[TopicSpec]
) -> dict[str, tuple[list[dict[str, Any]], dict[str, str]] | None]:
    """Each topic's partitions and effective configs, or None when it does not exist."""
    described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in specs])}
    found: dict[str, tuple[list[dict[str, Any]], dict[str, str]] | None] = {}
    existing = [s.name for s in specs if described.get(s.name, {}).get("error_code") == 0]
    configs: dict[str, dict[str, str]] = {name: {} for name in existing}
    if existing:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name, None) for name in existing]
        for response in await admin.describe_configs(resources):
            for _code, _message, _kind, name, entries in response.resources:
                configs[name] = {entry[0]: entry[1] for entry in entries}
    for spec in specs:
        topic = described.get(spec.name)
        found[spec.name] = (
            (topic["partitions"], configs[spec.name]) if spec.name in configs and topic else None
        )
    return found


async def _wait_for_leaders(admin: Any, specs: Sequence[TopicSpec]) -> None:
    async with asyncio.timeout(_READY_TIMEOUT_S):
        while True:
            described = await admin.describe_topics([s.name for s in specs])
            leaders = [p["leader"] for t in described for p in t["partitions"]]
            if len(leaders) == sum(s.partitions for s in specs) and all(leader >= 0 for leader in leaders):
                return
            await asyncio.sleep(0.1)  # metadata has no change notification: poll it briefly


async def ensure_topics(
    options: Mapping[str, Any], specs: Sequence[TopicSpec], *, create: bool
) -> list[Finding]:
    """Check every topic against its spec; with ``create``, first make the missing ones."""
    admin = AIOKafkaAdminClient(**for_client("admin", options))
    await admin.start()
    try:
        state = await _describe(admin, specs)
        created: list[TopicSpec] = []
        if create:
            missing = [s for s in specs if state[s.name] is None]
            if missing:
                response = await admin.create_topics(
                    [
                        NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs))
                        for s in missing
                    ]
                )
                failed = [
                    (name, code, msg)
                    for name, code, msg in response.topic_errors
                    if code not in (0, _TOPIC_EXISTS)
                ]
                if failed:
                    raise ToolError(
                        "creating topics failed: "
                        + "; ".join(f"{name}: {msg or f'Kafka error {code}'}" for name, code, msg in failed)
                    )
                await _wait_for_leaders(admin, missing)
                created = missing
                state = await _describe(admin, specs)
        findings = []
        for spec in specs:
            seen = state[spec.name]
            if seen is None:
                findings.append(Finding(spec, "missing", ["does not exist"]))
                continue
            problems = compare(spec, *seen)
            status = "differs" if problems else ("created" if spec in created else "ok")
            findings.append(Finding(spec, status, problems))
        return findings
    finally:
        await admin.close()


def render(findings: Sequence[Finding]) -> str:
    """One line per topic: role, name, status, and what differs."""
    width = max(len(f.spec.name) for f in findings)
    lines = []
    for f in findings:
        spec = f.spec
        planned = f"{spec.partitions} partitions, RF {spec.replication_factor}"
        extra = ", ".join(f"{k}={v}" for k, v in spec.configs.items())
        line = f"{spec.role:<8} {spec.name:<{width}}  {f.status:<8} planned: {planned}, {extra}"
        lines.append(line + ("" if not f.problems else "\n" + "\n".join(f"    - {p}" for p in f.problems)))
    verdict = "OK" if all(f.ok for f in findings) else "NOT AS PLANNED"
    return "\n".join(lines) + f"\n{verdict}\n"


DESCRIPTION = """\
Make and verify the service's three topics. The service never relies on topic auto-creation and
refuses to start when a topic is missing, so the topics come first. 'create' makes the missing
ones and checks the existing ones (it never alters a topic); 'check' only checks. Both compare
each topic with the plan: partition count, replication factor, min.insync.replicas, and
retention.ms of the errors topic. Exits 0 when every topic is as planned, 1 when one is missing
or differs, 2 when Kafka cannot be reached or a flag is wrong.
"""
CREATE_DESCRIPTION = """\
Create the missing topics (input, results, errors), then check all three against the plan. An
existing topic is never altered: a difference is reported (exit 1), not fixed.

Example:
  stream-service topics create -b broker-1:9092 --partitions 8 --replication-factor 3
"""
CHECK_DESCRIPTION = """\
Check that the three topics exist as planned (partitions, replication factor,
min.insync.replicas, errors retention); exit 1, naming each difference, when they do not.

Example:
  stream-service topics check -b broker-1:9092 --partitions 8
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``topics create`` and ``topics check``."""
    parser = subparsers.add_parser(
        "topics", help="create or check the input, results and errors topics", description=DESCRIPTION
    )
    sub = parser.add_subparsers(dest="topics_command", required=True, title="commands", metavar="COMMAND")
    for name, text, description in (
        (
            "create",
            "create the missing topics, then check all three (never alters an existing one)",
            CREATE_DESCRIPTION,
        ),
        ("check", "check that the three topics exist as planned (exit 1 when not)", CHECK_DESCRIPTION),
    ):
        cmd = sub.add_parser(name, help=text, description=description)
        add_connection_arguments(cmd)
        cmd.add_argument("--input-topic", metavar="TOPIC", help="the requests topic (default: topics.input)")
        cmd.add_argument(
            "--results-topic", metavar="TOPIC", help="the results topic (default: topics.results)"
        )
        cmd.add_argument("--errors-topic", metavar="TOPIC", help="the errors topic (default: topics.errors)")
        cmd.add_argument(
            "--partitions",
            type=int,
            default=DEFAULT_PARTITIONS,
            metavar="N",
            help="input partitions, the most replicas that share the work",
        )
        cmd.add_argument(
            "--output-partitions",
            type=int,
            metavar="N",
            help="results and errors partitions (default: --partitions)",
        )
        cmd.add_argument(
            "--replication-factor",
            type=int,
            default=DEFAULT_REPLICATION_FACTOR,
            metavar="N",
            help="replicas of each partition (1 for a single broker)",
        )
        cmd.add_argument(
            "--min-insync-replicas",
            type=int,
            metavar="N",
            help="min.insync.replicas (default: replication factor - 1, at least 1)",
        )
        cmd.add_argument(
            "--errors-retention-days",
            type=float,
            default=DEFAULT_ERRORS_RETENTION_DAYS,
            metavar="DAYS",
            help="retention.ms of the errors topic, in days",
        )
        cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``stream-service topics create|check``: 0 as planned, 1 not, 2 errors."""
    try:
        config = tool_config(
            args,
            {
                "input_topic": "topics.input",
                "results_topic": "topics.results",
                "errors_topic": "topics.errors",
            },
        )
        specs = plan_topics(
            config,
            partitions=args.partitions,
            output_partitions=args.output_partitions,
            replication_factor=args.replication_factor,
            min_insync_replicas=args.min_insync_replicas,
            errors_retention_days=args.errors_retention_days,
        )
        findings = asyncio.run(
            ensure_topics(tools_options(config), specs, create=args.topics_command == "create")
        )
    except (ToolError, ConfigError, KafkaError, OSError, TimeoutError) as exc:
        print(f"topics: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    sys.stdout.write(render(findings))
    return ExitCode.OK if all(f.ok for f in findings) else ExitCode.FAILED
