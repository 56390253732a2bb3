"""Command line: ``python -m stream_service.localkafka {start,fetch}`` (also ``stream-service kafka ...``).

``start`` prints the bootstrap address on stdout and runs in the foreground until Ctrl-C or SIGTERM,
then stops the broker(s). ``fetch`` only fills the jar cache (what the setup script calls).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from stream_service.localkafka.cluster import LocalKafka
from stream_service.localkafka.jars import LocalKafkaError, default_version, ensure_jars

_WATCH_INTERVAL_S = 1.0
DESCRIPTION = """\
A real Apache Kafka broker (KRaft, broker and controller in one JVM) on this machine, without
Docker: 'start' runs one (or a cluster with --nodes) in the foreground, 'fetch' caches the broker
jars. Needs Java 17+, and Maven once per Kafka version to fetch the jars into
~/.cache/stream-service.
"""
START_DESCRIPTION = """\
Start a local Kafka cluster and keep it running in the foreground until Ctrl-C or SIGTERM, then
stop it. The bootstrap address is printed on stdout (and nothing else), so a script can capture
it; progress goes to stderr. Exits 1 when a node cannot start or dies.

Example:
  stream-service kafka start --nodes 3
"""
FETCH_DESCRIPTION = """\
Download the Kafka broker jars of a version into the cache (what the setup script calls), so
that later starts need no network. --warm also starts and stops a broker once, which writes the
class-data archive that halves start-up.

Example:
  stream-service kafka fetch --warm
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``start`` and ``fetch`` subcommands to ``parser`` and point ``handler`` at :func:`run`."""
    sub = parser.add_subparsers(dest="kafka_command", required=True, title="commands", metavar="COMMAND")
    start = sub.add_parser(
        "start",
        help="run a local Kafka cluster in the foreground until Ctrl-C",
        description=START_DESCRIPTION,
    )
    start.add_argument("--nodes", type=int, default=1, metavar="N", help="combined broker+controller nodes")
    start.add_argument("--version", default=None, help=f"Kafka version (default: {default_version()})")
    start.add_argument("--host", default="127.0.0.1", help="listen address")
    start.add_argument(
        "--port", type=int, default=0, help="client port of node 1 (default: 0, any free port)"
    )
    fetch = sub.add_parser(
        "fetch", help="download the Kafka jars into the cache (needs mvn once)", description=FETCH_DESCRIPTION
    )
    fetch.add_argument("--version", default=None, help=f"Kafka version (default: {default_version()})")
    fetch.add_argument(
        "--warm",
        action="store_true",
        help="also start and stop a broker once, which writes the class-data archive that halves start-up",
    )
    parser.set_defaults(handler=run)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Mount these commands as ``<prog> kafka {start,fetch}`` (used by ``stream_service.cli``)."""
    parser = subparsers.add_parser(
        "kafka", help="run a real Kafka broker locally, without Docker", description=DESCRIPTION
    )
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Entry point for both command lines; returns the process exit status."""
    try:
        if args.kafka_command == "fetch":
            return _fetch(args)
        return _start(args)
    except LocalKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _fetch(args: argparse.Namespace) -> int:
    began = time.monotonic()
    lib = ensure_jars(args.version)
    print(f"Kafka {args.version or default_version()} jars in {lib} ({time.monotonic() - began:.1f} s)")
    if args.warm:
        with LocalKafka(version=args.version) as kafka:
            print(
                f"broker started in {kafka.started_in_s or 0.0:.1f} s; "
                "stopping it writes the class-data archive"
            )
    return 0


def _start(args: argparse.Namespace) -> int:
    stop = threading.Event()
    ready = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not ready.is_set():
            raise KeyboardInterrupt  # abandon a start in progress; start() cleans up after itself
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    kafka = LocalKafka(nodes=args.nodes, version=args.version, host=args.host, port=args.port)
    try:
        kafka.start()
        ready.set()
        print(kafka.bootstrap_servers, flush=True)
        print(
            f"Kafka ready in {kafka.started_in_s or 0.0:.1f} s ({args.nodes} node(s), "
            f"data in {kafka.data_dir}); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        # Wake up now and then to notice a broker that died on its own.
        while not stop.wait(_WATCH_INTERVAL_S):
            dead = [i for i in kafka.node_ids if not kafka.is_running(i)]
            if dead:
                print(f"error: node(s) {dead} exited:\n{kafka.log_tail(dead[0])}", file=sys.stderr)
                return 1
        print("stopping Kafka", file=sys.stderr)
        return 0
    finally:
        kafka.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    from stream_service.cli_format import CommandParser

    parser = CommandParser(prog="python -m stream_service.localkafka", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    handler = args.handler
    status: int = handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
