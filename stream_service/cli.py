"""The ``stream-service`` command: run the service, and the operator's tools around it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from stream_service import __version__
from stream_service.errors import ConfigError, PluginError


def _run(args: argparse.Namespace) -> int:
    from stream_service.config import config_from_args
    from stream_service.observability.logging import configure_logging
    from stream_service.service import EXIT_STARTUP, Service

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    configure_logging(level=config.observability.log_level, fmt=config.observability.log_format)
    try:
        return asyncio.run(Service(config).run())
    except PluginError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except ConfigError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return EXIT_STARTUP


def build_parser() -> argparse.ArgumentParser:
    from stream_service import config, schema
    from stream_service.localkafka.__main__ import register as register_kafka
    from stream_service.tools import demo, produce, reconcile, report

    parser = argparse.ArgumentParser(prog="stream-service", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stream-service {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume requests and publish results until SIGTERM")
    config.add_config_arguments(run)
    run.set_defaults(handler=_run)
    for register in (
        config.register,
        schema.register,
        produce.register,
        report.register,
        reconcile.register,
        demo.register,
        register_kafka,
    ):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
