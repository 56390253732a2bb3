"""README.md stays true: it quotes tested files verbatim; every command and setting it shows exists."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import get_args

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_service.cli import build_parser
from stream_service.config import SETTINGS, load_config
from stream_service.errors import ErrorType
from stream_service.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONFIG_DOC = ROOT / "docs" / "configuration.md"
CODE_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE_COMMAND = re.compile(r"`((?:stream-service|deploy/dev\.sh) [^`<]*)`")
SETTING_ROW = re.compile(r"^\| `([a-z_]+\.[a-z_.]+)` \| ([^|]+?) \|", re.MULTILINE)
SHELL_BLOCKS = ("", "sh", "console", "bash")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the README section ``## title``, up to the next ``## `` heading."""
    text = readme()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def shell_commands(text: str) -> list[list[str]]:
    """Every command line of the shell code blocks, then every inline command, as argv lists."""
    lines: list[str] = []
    for language, body in CODE_BLOCK.findall(text):
        if language in SHELL_BLOCKS:
            lines.extend(body.replace("\\\n", " ").splitlines())
    lines.extend(INLINE_COMMAND.findall(CODE_BLOCK.sub("", text)))
    commands = []
    for line in lines:
        argv = shlex.split(line.removeprefix("$ "), comments=True)
        while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
            argv = argv[1:]  # environment assignments before the command
        if argv:
            commands.append(argv)
    return commands


def test_readme_quotes_the_plugin_fixture_verbatim() -> None:
    """README.md shows exactly the code of tests/fixtures/readme_plugin.py, which the loader tests run."""
    source = (ROOT / "tests" / "fixtures" / "readme_plugin.py").read_text(encoding="utf-8")
    assert f"```python\n{source}```" in readme(), "copy tests/fixtures/readme_plugin.py into README.md"


@pytest.mark.parametrize("name", ["request", "result", "error_record"])
def test_readme_quotes_the_schema_examples_verbatim(name: str) -> None:
    """README.md shows each schemas/examples file verbatim, so its examples stay valid."""
    example = (ROOT / "schemas" / "examples" / f"{name}.json").read_text(encoding="utf-8")
    assert f"```json\n{example}```" in readme(), f"copy schemas/examples/{name}.json into README.md"


def test_quick_start_is_two_commands_and_ci_runs_the_first() -> None:
    """The quick start is exactly `deploy/dev.sh test` and `deploy/dev.sh demo`; .ci/run runs the first."""
    blocks = CODE_BLOCK.findall(section("Quick start"))
    commands = [line.split("#")[0].strip() for line in blocks[0][1].splitlines() if line.strip()]
    assert commands == ["deploy/dev.sh test", "deploy/dev.sh demo"]
    assert "deploy/dev.sh test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_command_shown_exists() -> None:
    """Each `stream-service ...` and `deploy/dev.sh ...` command in README.md parses with today's CLI."""
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    dev_sh = (ROOT / "deploy" / "dev.sh").read_text(encoding="utf-8")
    checked = 0
    for argv in shell_commands(readme()):
        program, args = Path(argv[0]).name, argv[1:]
        if program == "dev.sh":
            assert args and f"    {args[0]})" in dev_sh, f"deploy/dev.sh has no command {args[:1]}"
            if args[0] == "demo":
                args = argv[1:]  # the rest goes to `stream-service demo`
            else:
                checked += 1
                continue
        elif program != "stream-service":
            continue
        if len(args) == 1:  # a subcommand named on its own, e.g. `stream-service kafka` in a table
            assert args[0] in subcommands, f"stream-service has no command {args[0]}"
            checked += 1
            continue
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"README.md shows a command the CLI rejects: {shlex.join(argv)}")
        checked += 1
    assert checked >= 10, f"only {checked} commands found; is the README parsed correctly?"


def test_readme_settings_exist_with_their_documented_defaults() -> None:
    """Every setting row in README.md names a real setting and shows the default of the full reference."""
    reference = {}
    for line in CONFIG_DOC.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"\| `([a-z_.]+)` \|", line):
            reference[match[1]] = line.split(" | ")[3].strip()
    rows = SETTING_ROW.findall(section("Configuration"))
    assert len(rows) >= 10
    for key, default in rows:
        assert key in SETTINGS, f"README.md documents {key}, which is not a setting"
        assert default.strip() == reference[key], (
            f"README.md shows {key} = {default}, the default is {reference[key]}"
        )


def test_readme_toml_examples_load(tmp_path: Path) -> None:
    """Each TOML example in README.md is a configuration the loader accepts."""
    examples = [body for language, body in CODE_BLOCK.findall(readme()) if language == "toml"]
    assert examples
    for number, body in enumerate(examples):
        path = tmp_path / f"example{number}.toml"
        path.write_text(body, encoding="utf-8")
        load_config(file=str(path), environ={})


def test_readme_names_every_error_type() -> None:
    """README.md lists every error_type an ErrorRecord may carry."""
    text = section("Message contract")
    missing = [t for t in get_args(ErrorType) if f"`{t}`" not in text]
    assert not missing, f"name these error types in README.md: {missing}"


def test_readme_metric_names_are_exposed() -> None:
    """Every metric README.md names under Operations is in a service's /metrics exposition."""
    text = section("Operations")
    listed = text[text.index("**Metrics**") : text.index("Tenant labels")]
    names = [n for n in re.findall(r"`([a-z_]+)(?:\{[a-z_,]+\})?`", listed) if not n.endswith("_")]
    assert len(names) >= 20
    metrics = Metrics(CollectorRegistry())
    metrics.requests_total.labels(tenant="a", outcome="success").inc()
    metrics.errors_total.labels(error_type="timeout").inc()
    metrics.published_total.labels(topic="results").inc()
    metrics.retries_total.labels(error_type="timeout").inc()
    metrics.pauses_total.labels(reason="in_flight_full").inc()
    metrics.set_lag("requests", 0, 3)
    exposition = generate_latest(metrics.registry).decode()
    missing = [name for name in names if f"\nstream_service_{name}" not in exposition]
    assert not missing, f"README.md names metrics the service does not expose: {missing}"


def test_command_line_section_lists_every_command_and_each_help_works(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every command (nested ones too) is in the Command line table with an example, and its --help runs."""
    from stream_service.cli import main
    from stream_service.cli_format import iter_parsers

    text = section("Command line")
    listed = re.findall(r"^\| `stream-service ([a-z ]+)` \|", text, re.MULTILINE)
    leaves = {
        path
        for path, parser in iter_parsers(build_parser())
        if path and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    }
    assert set(listed) == leaves, f"list these commands in README.md's Command line: {leaves - set(listed)}"
    examples = [argv[1:] for argv in shell_commands(text) if argv[0] == "stream-service"]
    for command in listed:
        words = command.split()
        assert any(argv[: len(words)] == words for argv in examples), f"no example of {command}"
        with pytest.raises(SystemExit) as exit_info:
            main([*words, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: stream-service {command}" in capsys.readouterr().out
