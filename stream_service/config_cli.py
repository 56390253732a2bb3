"""Command-line flags for the configuration: ``--config``, the common setting flags, ``--set KEY=VALUE``.

Flags only name values; :func:`stream_service.config.load_config` (the only reader of the
environment and of config files) merges them over the file and the environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import msgspec.inspect as mi

from stream_service.config import CLIENT_OPTIONS, CONFIG_FILE_ENV, SETTINGS, Config, load_config
from stream_service.errors import ConfigError

__all__ = [
    "add_client_option_argument",
    "add_config_arguments",
    "client_option_flags",
    "config_from_args",
    "flags_from_args",
    "register",
]

# Short flags as the Kafka tools and kcat have them: -b brokers, -t the topic read (kcat -t; for
# run the requests topic), -G (kcat) or -g the consumer group, -X a client setting.
_SHORT = {"--bootstrap-servers": ("-b",), "--input-topic": ("-t",), "--group-id": ("-G", "-g")}
_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--bootstrap-servers", "kafka.bootstrap_servers", "HOST:PORT[,...]"),
    ("--input-topic", "topics.input", "TOPIC"),
    ("--results-topic", "topics.results", "TOPIC"),
    ("--errors-topic", "topics.errors", "TOPIC"),
    ("--group-id", "topics.group_id", "GROUP"),
    ("--processor", "processor.name", "NAME"),
    ("--executor", "executor.kind", ""),
    ("--metrics-port", "observability.metrics_port", "PORT"),
    ("--log-level", "observability.log_level", ""),
)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _default(value: object) -> str:
    return "unset" if value is None else str(value).replace("%", "%%")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, the common setting flags and a repeatable ``--set KEY=VALUE`` to ``parser``."""
    group = parser.add_argument_group("configuration", "flags override the config file and the environment")
    group.add_argument(
        "--config", dest="config_file", metavar="PATH", help=f"TOML config file (default: ${CONFIG_FILE_ENV})"
    )
    for flag, key, metavar in _FLAGS:
        setting = SETTINGS[key]
        choices = list(setting.info.values) if isinstance(setting.info, mi.LiteralType) else None
        group.add_argument(
            *_SHORT.get(flag, ()),
            flag,
            dest=_dest(flag),
            choices=choices,
            metavar=metavar or None,
            help=f"sets {key}, env {setting.env_var} (default: {_default(setting.default)})",
        )
    group.add_argument(
        "--set",
        dest="config_overrides",
        action="append",
        metavar="KEY=VALUE",
        help="set any setting by dotted key, value written as in the environment (repeatable)",
    )
    add_client_option_argument(group)


def add_client_option_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """A repeatable ``-X key=value``: one entry of kafka.client_options (aiokafka pass-through)."""
    parser.add_argument(
        "-X",
        dest="client_options",
        action="append",
        metavar="KEY=VALUE",
        help="pass an aiokafka client setting through, e.g. -X fetch.min.bytes=1024 (repeatable; "
        "Kafka's dotted names accepted; sets an entry of kafka.client_options)",
    )


def client_option_flags(args: argparse.Namespace) -> tuple[dict[str, object], dict[str, str]]:
    """The ``-X key=value`` entries as flags ``kafka.client_options.<key>``, with their labels."""
    flags: dict[str, object] = {}
    labels: dict[str, str] = {}
    for item in getattr(args, "client_options", None) or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"invalid -X {item}: expected KEY=VALUE, e.g. -X fetch.min.bytes=1024")
        name = f"{CLIENT_OPTIONS}.{key.strip()}"
        flags[name], labels[name] = value, f"flag -X {key.strip()}"
    return flags, labels


def flags_from_args(args: argparse.Namespace) -> tuple[str | None, dict[str, object], dict[str, str]]:
    """The config file, flags and flag labels given on the command line (named flags win over --set)."""
    flags: dict[str, object] = {}
    labels: dict[str, str] = {}
    for item in getattr(args, "config_overrides", None) or ():
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"invalid --set {item}: expected KEY=VALUE, e.g. --set batch.max_size=100")
        key = key.strip()
        flags[key], labels[key] = text, f"flag --set {key}"
    for flag, key, _ in _FLAGS:
        if (value := getattr(args, _dest(flag), None)) is not None:
            flags[key], labels[key] = value, f"flag {flag}"
    entries, entry_labels = client_option_flags(args)
    flags.update(entries)
    labels.update(entry_labels)
    return getattr(args, "config_file", None), flags, labels


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config for parsed command-line arguments (see :func:`add_config_arguments`)."""
    file, flags, labels = flags_from_args(args)
    return load_config(file=file, environ=environ, flags=flags, flag_labels=labels)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` subcommand (prints the effective configuration, secrets redacted)."""
    from stream_service.tools import show_config  # here, not at the top: show_config imports this module

    show_config.register(subparsers)
