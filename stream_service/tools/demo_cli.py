"""The ``stream-service demo`` command: its flags, and running :func:`~stream_service.tools.demo.run_demo`.

The handler loads the configuration (flags over the config file and the environment), sends
the service's log to a temporary file so the progress line stays readable, runs the demo in
its own event loop with Ctrl-C/SIGTERM handling, and turns what happened into the exit status
documented in :mod:`stream_service.tools.demo`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from stream_service.config import load_config_with_sources
from stream_service.config_cli import client_option_flags
from stream_service.errors import ConfigError, PluginError, ToolError
from stream_service.exit_codes import ExitCode
from stream_service.localkafka import LocalKafkaError
from stream_service.tools.connection import add_connection_arguments
from stream_service.tools.demo import (
    BASE_TIMEOUT_S,
    DEFAULT_COUNT,
    DEFAULT_TENANTS,
    DemoOptions,
    run_demo,
)

__all__ = ["register", "run"]

_LOG_TAIL_LINES = 20


def _positive(kind: Callable[[str], Any], *, zero: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if zero else '> 0'}, got {text}")
        return value

    return parse


DESCRIPTION = """\
The whole service end to end, on one machine, in one command. With no broker configured it starts
a local Kafka broker; with --bootstrap-servers (or KAFKA_BOOTSTRAP_SERVERS, or a config file) it
uses that one. It creates fresh topics, produces a realistic mix of requests (several tenants
with uneven shares, the four built-in profiles, some duplicates, some bad input) while running
the service in-process behind a live progress line, stops the service once every request is
answered, and prints the report and the reconcile verdict. Everything it started is stopped
before it exits, on Ctrl-C or SIGTERM too. Exits 0 when every request has an output, 1 when some
are missing, 2 on configuration or connection problems, 130 when interrupted.

Example:
  stream-service demo --count 100000 --executor process
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run everything end to end: local broker, load, service, report, reconcile",
        description=DESCRIPTION,
    )
    add_connection_arguments(parser)
    parser.add_argument("--count", type=_positive(int), default=DEFAULT_COUNT, metavar="N", help="requests")
    parser.add_argument(
        "--rate",
        type=_positive(float, zero=True),
        default=0.0,
        metavar="PER_S",
        help="requests/s; 0 = at once",
    )
    parser.add_argument(
        "--tenants", type=_positive(int), default=DEFAULT_TENANTS, metavar="N", help="tenants"
    )
    parser.add_argument(
        "--processor", metavar="NAME", help="processor.name (default: the configured one, resonance)"
    )
    parser.add_argument("--executor", choices=["async", "thread", "process"], help="executor.kind")
    parser.add_argument(
        "--timeout",
        type=_positive(float),
        metavar="S",
        help=f"seconds the service may take to answer everything (default: {BASE_TIMEOUT_S:.0f}, "
        "plus count/rate with --rate)",
    )
    parser.add_argument(
        "--exactly-once",
        action="store_true",
        help="run with delivery.guarantee = exactly_once; the verdict then also requires 0 duplicates",
    )
    parser.add_argument("--seed", type=int, default=0, help="fixes every generated request")
    parser.add_argument(
        "--keep-broker",
        action="store_true",
        help="after the report, keep the local broker and topics until Ctrl-C (to try the other tools)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``stream-service demo``."""
    from stream_service.observability.logging import configure_logging

    flags: dict[str, object] = {}
    labels: dict[str, str] = {}
    named = (
        ("bootstrap_servers", "kafka.bootstrap_servers"),
        ("processor", "processor.name"),
        ("executor", "executor.kind"),
    )
    for dest, key in named:
        if getattr(args, dest, None):
            flags[key], labels[key] = getattr(args, dest), f"flag --{dest.replace('_', '-')}"
    if args.exactly_once:
        flags["delivery.guarantee"], labels["delivery.guarantee"] = "exactly_once", "flag --exactly-once"
    try:
        entries, entry_labels = client_option_flags(args)
        flags.update(entries)
        labels.update(entry_labels)
        base, sources = load_config_with_sources(file=args.config_file, flags=flags, flag_labels=labels)
    except ConfigError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    options = DemoOptions(
        count=args.count,
        rate=args.rate,
        tenants=args.tenants,
        timeout_s=args.timeout,
        seed=args.seed,
        keep_broker=args.keep_broker,
    )
    bootstrap = base.kafka.bootstrap_servers if "kafka.bootstrap_servers" in sources else None
    # The service logs (warnings and worse) go to a file, so the progress line stays readable.
    log_dir = Path(tempfile.mkdtemp(prefix="stream-service-demo-"))
    log_path = log_dir / "service.log"
    code: int = ExitCode.USAGE  # also what an unexpected exception leaves, so its log is kept
    try:
        with log_path.open("w", encoding="utf-8") as log_stream:
            configure_logging(level="warning", fmt="json", stream=log_stream)
            try:
                outcome = asyncio.run(run_demo(base, options, bootstrap=bootstrap, handle_signals=True))
                code = outcome.exit_code
            except (ConfigError, PluginError, LocalKafkaError, ToolError, KafkaError, OSError) as exc:
                print(f"demo: {exc}", file=sys.stderr)
            except (KeyboardInterrupt, asyncio.CancelledError):  # a signal during the final clean-up
                code = ExitCode.INTERRUPTED
            finally:
                configure_logging(level="warning", fmt="json", stream=sys.stderr)  # before the file closes
    finally:
        _keep_log_if_failed(log_path, failed=code not in (ExitCode.OK, ExitCode.INTERRUPTED))
    return code


def _keep_log_if_failed(log_path: Path, *, failed: bool) -> None:
    """After a failure show the service log's tail and keep the file; otherwise delete it.

    A successful run's log only holds the expected warnings (one per bad input), which the
    report already sums up.
    """
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines() if failed else []
    if not lines:
        shutil.rmtree(log_path.parent, ignore_errors=True)
        return
    print("\n".join(lines[-_LOG_TAIL_LINES:]), file=sys.stderr)
    print(f"demo: the service log ({len(lines)} warning/error lines) is kept in {log_path}", file=sys.stderr)
