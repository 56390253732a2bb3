"""Every command's --help reads like its peers': plain text, a description, choices and defaults shown."""

from __future__ import annotations

import argparse
import re

import pytest

from stream_service import schema
from stream_service.cli import build_parser, main
from stream_service.cli_format import HelpFormatter, iter_parsers, shown_default
from stream_service.localkafka import __main__ as localkafka_main

MARKUP = re.compile(r"``|:(?:class|func|mod|meth|data|attr|exc):|`~")
PARSERS = iter_parsers(build_parser())
COMMANDS = [pytest.param(parser, id=path or "stream-service") for path, parser in PARSERS]


def option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help entry of one option as --help prints it (wrapped lines joined)."""
    formatter = parser._get_formatter()
    assert isinstance(formatter, HelpFormatter)
    return " ".join(formatter._format_action(action).split())


def test_every_command_is_walked() -> None:
    """The walk reaches every subcommand, the nested ones included."""
    paths = {path for path, _ in PARSERS}
    assert {"", "run", "config", "schema", "produce", "report", "reconcile", "replay", "demo"} <= paths
    assert {"topics create", "topics check", "kafka start", "kafka fetch"} <= paths


@pytest.mark.parametrize("parser", COMMANDS)
def test_help_is_plain_text_with_a_description(parser: argparse.ArgumentParser) -> None:
    """Each --help has a description and no reST or Sphinx markup."""
    assert parser.description and parser.description.strip(), f"{parser.prog} has no description"
    text = parser.format_help()
    assert not MARKUP.search(text), f"{parser.prog} --help shows markup: {MARKUP.search(text)}"


@pytest.mark.parametrize("parser", COMMANDS)
def test_every_default_and_choice_is_shown(parser: argparse.ArgumentParser) -> None:
    """An option with a default names it in its help, and an option with choices lists them."""
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        entry = option_help(parser, action)
        if shown_default(action.default) is not None:
            assert "default" in entry, f"{parser.prog} {action.option_strings[0]}: default not shown"
        if action.choices:
            assert "{" + ",".join(map(str, action.choices)) + "}" in entry


@pytest.mark.parametrize(
    ("default", "shown"),
    [
        pytest.param(None, None, id="unset"),
        pytest.param(False, None, id="flag off"),
        pytest.param([], None, id="empty list"),
        pytest.param(["a", "b"], "a,b", id="list"),
        pytest.param(14.0, "14", id="whole float"),
        pytest.param(0.5, "0.5", id="float"),
    ],
)
def test_shown_default(default: object, shown: str | None) -> None:
    """Defaults are shown as a user would type them; absent ones are not shown at all."""
    assert shown_default(default) == shown


def test_description_keeps_examples_and_rewraps_paragraphs(capsys: pytest.CaptureFixture[str]) -> None:
    """Paragraphs are re-wrapped, an indented example line is printed as written."""
    with pytest.raises(SystemExit):
        main(["topics", "create", "--help"])
    out = capsys.readouterr().out
    assert "\n  stream-service topics create -b broker-1:9092 --partitions 8" in out
    assert all(len(line) <= 110 for line in out.splitlines() if not line.startswith("  stream-service"))


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(schema.main, id="python -m stream_service.schema"),
        pytest.param(localkafka_main.main, id="python -m stream_service.localkafka"),
    ],
)
def test_module_entry_points_share_the_help(entry: object, capsys: pytest.CaptureFixture[str]) -> None:
    """The python -m entry points print the same plain-text help as the subcommands."""
    with pytest.raises(SystemExit):
        entry(["--help"])  # type: ignore[operator]
    out = capsys.readouterr().out
    assert out and not MARKUP.search(out)
