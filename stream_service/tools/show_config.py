"""``stream-service config``: print the effective configuration, secrets redacted.

The default output is TOML that ``--config`` accepts back (secrets print as ``"***"``); each
setting not at its default carries a comment naming its source. ``--json`` prints JSON instead.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from stream_service.config import SETTINGS, load_config_with_sources, redacted
from stream_service.config_cli import add_config_arguments, flags_from_args
from stream_service.errors import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
DESCRIPTION = """\
Print the effective configuration: defaults, then the config file, the environment and the flags,
a later source winning. Each setting that is not at its default carries a comment naming where it
came from; secrets print as "***". The TOML output is accepted back by --config; --json prints
JSON instead. An invalid configuration exits 2 with one line naming the setting and its source.

Example:
  STREAM_SERVICE_BATCH__MAX_SIZE=1024 stream-service config --input-topic prompts
"""


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _value(value: Any) -> str:
    """A TOML literal. None has no TOML form; inside tables it is left out by the caller."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        items = [f"{_key(str(k))} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def render_toml(settings: Mapping[str, Any], sources: Mapping[str, str], prefix: str = "") -> str:
    """Render ``redacted(config)`` as TOML, commenting where each non-default value came from."""
    lines: list[str] = []
    tables: list[str] = []
    for name, value in settings.items():
        key = prefix + name
        setting = SETTINGS.get(key)
        if setting is None:  # a section: rendered after this table's own keys, as TOML requires
            tables.append(f"\n\n[{key}]\n" + render_toml(value, sources, key + "."))
            continue
        comment = f"  # {sources[key]}" if key in sources else ""
        if value is None and setting.default is None:
            lines.append(f"# {name} is unset{comment}")
        elif value is None:  # an empty value unsets an optional setting (see docs/configuration.md)
            lines.append(f'{name} = ""  # unset{comment.replace("  #", ",")}')
        else:
            lines.append(f"{name} = {_value(value)}{comment}")
    return "\n".join(lines) + "".join(tables)


def reference_row(key: str) -> str:
    """The generated cells of a setting's row in docs/configuration.md (the meaning cell follows)."""
    setting = SETTINGS[key]
    default = "unset" if setting.default is None else f"`{_value(setting.default)}`"
    return f"| `{key}` | `{setting.env_var}` | {setting.allowed} | {default} |"


def run(args: argparse.Namespace) -> int:
    """Print the effective configuration; exit 2 with one line on stderr when it is invalid."""
    try:
        file, flags, labels = flags_from_args(args)
        config, sources = load_config_with_sources(file=file, flags=flags, flag_labels=labels)
    except ConfigError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(redacted(config), indent=2))
    else:
        print(render_toml(redacted(config), sources).lstrip("\n"))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` subcommand to a ``stream-service`` command line."""
    parser = subparsers.add_parser(
        "config", help="print the effective configuration (secrets redacted)", description=DESCRIPTION
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    add_config_arguments(parser)
    parser.set_defaults(handler=run)
