"""JSON Schema of the wire contract, generated from the Structs in :mod:`stream_service.messages`.

The files in ``schemas/`` are this module's output and a test fails when they drift from the
Structs; ``asyncapi.json`` among them is the AsyncAPI 3.0 document of the three topics
(:mod:`stream_service.asyncapi`), for the default topic names. Regenerate them with
``stream-service schema --write schemas`` (or, without the CLI,
``python -m stream_service.schema --write schemas``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from stream_service import asyncapi
from stream_service.messages import ErrorRecord, Request, Result

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
MESSAGE_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "request": Request,
    "result": Result,
    "error_record": ErrorRecord,
}
REGENERATE_HINT: Final = (
    "run `stream-service schema --write schemas` (or `python -m stream_service.schema --write schemas`)"
)


def schema_of(message_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one message type, descriptions dedented."""
    schema = msgspec.json.schema(message_type)
    for definition in schema.get("$defs", {}).values():
        if "description" in definition:
            definition["description"] = inspect.cleandoc(definition["description"])
    return {"$schema": SCHEMA_DIALECT, **schema}


def render(schema: dict[str, Any]) -> str:
    """The stable text of a schema file: indent 2, sorted keys, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


ASYNCAPI_FILE: Final = "asyncapi.json"


def generate() -> dict[str, str]:
    """File name -> text for every schema file, e.g. ``request.schema.json``, and ``asyncapi.json``."""
    files = {f"{name}.schema.json": render(schema_of(cls)) for name, cls in MESSAGE_TYPES.items()}
    files[ASYNCAPI_FILE] = render(asyncapi.document())
    return files


def write(directory: Path) -> list[Path]:
    """Write every schema file into ``directory`` (created if missing); returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in generate().items():
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path) -> list[str]:
    """Names of the schema files in ``directory`` that are missing or differ from the Structs."""
    out_of_date = []
    for file_name, text in generate().items():
        path = directory / file_name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out_of_date.append(file_name)
    return out_of_date


def run(args: argparse.Namespace) -> int:
    """Print, write (``--write DIR``) or check (``--check DIR``) the schema files."""
    if args.write is not None:
        for path in write(Path(args.write)):
            print(path)
        return 0
    if args.check is not None:
        if out_of_date := stale(Path(args.check)):
            print(
                f"schemas out of date in {args.check}: {', '.join(out_of_date)}; {REGENERATE_HINT}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.asyncapi:
        from stream_service.config import load_config
        from stream_service.errors import ConfigError

        try:
            topics = load_config(file=args.config_file).topics
        except ConfigError as exc:
            print(f"schema: {exc}", file=sys.stderr)
            return 2
        print(render(asyncapi.document(topics)), end="")
        return 0
    if args.name is not None:
        print(render(schema_of(MESSAGE_TYPES[args.name])), end="")
    else:
        print(render({name: schema_of(cls) for name, cls in MESSAGE_TYPES.items()}), end="")
    return 0


DESCRIPTION = """\
Print the JSON Schema (draft 2020-12) of the message contract, generated from the msgspec Structs
the service decodes and encodes with: the Request of the input topic, the Result and the
ErrorRecord of the output topics. --asyncapi prints an AsyncAPI 3.0 document of the three
topics instead (channels, operations, the lineage headers, Kafka bindings), with the topic names
and consumer group of the configuration. --write regenerates the schemas/ directory (the
AsyncAPI document there is for the default names), --check exits 1 when its files have drifted.

Example:
  stream-service schema --asyncapi --config stream-service.toml
"""


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", choices=list(MESSAGE_TYPES), help="print only this schema")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", metavar="DIR", help="write the *.schema.json files into DIR")
    action.add_argument("--check", metavar="DIR", help="exit 1 if the files in DIR are out of date")
    action.add_argument(
        "--asyncapi",
        action="store_true",
        help="print the AsyncAPI 3.0 document of the three topics (names and group from the configuration)",
    )
    parser.add_argument(
        "--config",
        dest="config_file",
        metavar="PATH",
        help="TOML config file, for --asyncapi (default: $STREAM_SERVICE_CONFIG)",
    )
    parser.set_defaults(handler=run)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``schema`` subcommand to a ``stream-service`` command line."""
    parser = subparsers.add_parser(
        "schema", help="print or write the JSON Schema of the message contract", description=DESCRIPTION
    )
    _add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stream_service.schema``: the ``schema`` subcommand without the rest of the CLI."""
    from stream_service.cli_format import CommandParser

    parser = CommandParser(prog="python -m stream_service.schema", description=DESCRIPTION)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
