"""How every ``stream-service`` command prints its ``--help``: one formatter for all of them.

A command's description is plain text: paragraphs (separated by blank lines) are re-wrapped to
the terminal, lines indented by two spaces or more (examples) are kept as written. Every option
whose default is a value shows it, ``(default: 8)``, unless its help already names the default;
choices show as ``{a,b,c}`` (argparse's own rendering).

:class:`CommandParser` uses the formatter and hands it to every subcommand parser made from it,
nested ones included, so a command registered anywhere looks like its peers.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Sequence
from typing import Any

__all__ = ["CommandParser", "HelpFormatter", "iter_parsers", "shown_default"]

_INDENTED = re.compile(r"^ {2,}\S")


def shown_default(default: object) -> str | None:
    """How an option's default appears in help, or None when there is no value worth showing
    (unset, a flag that is off, an empty list)."""
    if default is None or default is False or default is argparse.SUPPRESS:
        return None
    if isinstance(default, list | tuple):
        return ",".join(str(item) for item in default) if default else None
    if isinstance(default, float) and default.is_integer():
        return f"{default:g}"
    return str(default)


class HelpFormatter(argparse.HelpFormatter):
    """Wrapped paragraphs, verbatim examples, and the default of every option that has one."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 32) -> None:
        super().__init__(prog, indent_increment, max_help_position)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks: list[str] = []
        for block in re.split(r"\n\s*\n", text.strip("\n")):
            lines = block.splitlines()
            if any(_INDENTED.match(line) for line in lines):
                blocks.append("\n".join(indent + line for line in lines))
            else:
                flat = " ".join(line.strip() for line in lines)
                blocks.append(
                    textwrap.fill(
                        flat, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
                    )
                )
        return "\n\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or "default" in text.lower():
            return text
        shown = shown_default(action.default)
        if shown is None:
            return text
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose help (and that of its subcommands) uses :class:`HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def iter_parsers(
    parser: argparse.ArgumentParser, path: Sequence[str] = ()
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself first) with its command path, e.g. ``topics create``."""
    found = [(" ".join(path), parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(iter_parsers(sub, (*path, name)))
    return found
