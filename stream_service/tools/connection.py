"""The operator tools' connection flags and configuration.

Connection settings come from :func:`stream_service.config.load_config` (config file,
environment, then ``--bootstrap-servers``); the clients themselves from
:mod:`stream_service.clients`, the same options the service uses.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from stream_service.config import Config, load_config
from stream_service.config_cli import add_client_option_argument, client_option_flags

__all__ = ["add_connection_arguments", "tool_config"]


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``-b/--bootstrap-servers`` and ``-X key=value``; the rest of the connection
    comes from the config."""
    parser.add_argument(
        "--config",
        dest="config_file",
        metavar="PATH",
        help="TOML config file (default: $STREAM_SERVICE_CONFIG)",
    )
    parser.add_argument(
        "-b",
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        help="Kafka brokers (default: kafka.bootstrap_servers, env KAFKA_BOOTSTRAP_SERVERS)",
    )
    add_client_option_argument(parser)


def tool_config(args: argparse.Namespace, topic_flags: Mapping[str, str] | None = None) -> Config:
    """The Config for a tool: file < environment < ``--bootstrap-servers`` and topic flags.

    ``topic_flags`` maps an argparse destination (``results_topic``) to its setting
    (``topics.results``); flags left unset keep the configured value.
    """
    flags: dict[str, object] = {}
    labels: dict[str, str] = {}
    if getattr(args, "bootstrap_servers", None):
        flags["kafka.bootstrap_servers"] = args.bootstrap_servers
        labels["kafka.bootstrap_servers"] = "flag --bootstrap-servers"
    entries, entry_labels = client_option_flags(args)
    flags.update(entries)
    labels.update(entry_labels)
    for dest, key in (topic_flags or {}).items():
        value = getattr(args, dest, None)
        if value is not None:
            flags[key] = value
            labels[key] = f"flag --{dest.replace('_', '-')}"
    return load_config(file=getattr(args, "config_file", None), flags=flags, flag_labels=labels)
