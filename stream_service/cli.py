"""The ``stream-service`` command: run the service, and the operator's tools around it."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import cast

from stream_service import __version__
from stream_service.errors import ConfigError, PluginError
from stream_service.exit_codes import ExitCode


def _run(args: argparse.Namespace) -> int:
    from stream_service import heap
    from stream_service.config_cli import config_from_args
    from stream_service.loop import loop_factory
    from stream_service.observability.logging import configure_logging
    from stream_service.service import Service

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    configure_logging(level=config.observability.log_level, fmt=config.observability.log_format)
    service = Service(config)
    try:
        factory = loop_factory(config.runtime.event_loop)
    except ImportError:
        print("stream-service: runtime.event_loop = uvloop, but uvloop is not installed", file=sys.stderr)
        return ExitCode.USAGE
    heap.apply_policy(config.runtime.gc_young_threshold)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(service.run())
    except asyncio.CancelledError:
        if service.forced:
            return ExitCode.INTERRUPTED  # the second signal: the run was cancelled on purpose
        raise
    except PluginError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except ConfigError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return ExitCode.USAGE


DESCRIPTION = """\
A Kafka request processor: run it, and the operator's tools around it. 'run' consumes requests
and publishes a result or an error record for each; the other commands generate load, report
on the outputs, prove that no input was lost, manage the topics and run a local broker.

Every command reads its settings from the config file (--config, or $STREAM_SERVICE_CONFIG), the
environment (STREAM_SERVICE_<SECTION>__<FIELD>, KAFKA_BOOTSTRAP_SERVERS) and its flags, a later
source winning; 'stream-service config' shows the result.
"""
RUN_DESCRIPTION = """\
Consume requests from the input topic, process them in micro-batches, and publish one result or
error record per input, committing offsets only behind outputs Kafka has acknowledged. Stays in
the foreground: the first SIGTERM or SIGINT drains and commits (exit 0), a second one forces an
exit (130); a startup problem (bad setting, broker unreachable, missing topic, processor that
cannot be loaded) exits 2 with a one-line explanation.

Example:
  stream-service run -b broker-1:9092 -t requests -G prompt-workers --processor echo
"""


def build_parser() -> argparse.ArgumentParser:
    from stream_service import config_cli, schema
    from stream_service.cli_format import CommandParser
    from stream_service.localkafka.__main__ import register as register_kafka
    from stream_service.tools import demo_cli, produce, reconcile, replay, report, topics

    parser = CommandParser(
        prog="stream-service",
        description=DESCRIPTION,
        epilog="Run 'stream-service COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"stream-service {__version__}")
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND"),
    )
    run = sub.add_parser(
        "run", help="consume requests and publish results until SIGTERM", description=RUN_DESCRIPTION
    )
    config_cli.add_config_arguments(run)
    run.set_defaults(handler=_run)
    for register in (
        config_cli.register,
        schema.register,
        produce.register,
        report.register,
        reconcile.register,
        replay.register,
        topics.register,
        demo_cli.register,
        register_kafka,
    ):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except BrokenPipeError:
        # `stream-service config | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
