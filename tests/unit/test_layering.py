"""The package's layers, read from the imports of every module (including imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "stream_service"
CONTRACT = {"messages", "errors", "wire", "exit_codes", "settings"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every stream_service module ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("stream_service.")}


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def offenders(layer: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for module, imported in MODULES.items():
        if module == layer or module.startswith(layer + "."):
            hits = sorted(i for i in imported if any(i == f or i.startswith(f + ".") for f in forbidden))
            if hits:
                bad[module] = hits
    return bad


def test_the_package_was_read() -> None:
    """The layering checks below see the modules they are about."""
    assert {"stream_service.engine", "stream_service.pipeline.ledger", "stream_service.wire"} <= set(MODULES)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        pytest.param(
            "stream_service.pipeline",
            (
                "stream_service.engine",
                "stream_service.wiring",
                "stream_service.service",
                "stream_service.cli",
                "stream_service.tools",
                "stream_service.config",
            ),
            id="pipeline never imports the engine, wiring, service, CLI, tools or config loading",
        ),
        pytest.param(
            "stream_service.processors",
            (
                "stream_service.pipeline",
                "stream_service.engine",
                "stream_service.service",
                "stream_service.config",
            ),
            id="processors never import the pipeline",
        ),
        pytest.param(
            "stream_service.observability",
            (
                "stream_service.pipeline",
                "stream_service.engine",
                "stream_service.service",
                "stream_service.config",
            ),
            id="observability never imports the pipeline",
        ),
        pytest.param(
            "stream_service.engine",
            (
                "stream_service.wiring",
                "stream_service.service",
                "stream_service.cli",
                "stream_service.config",
            ),
            id="the engine receives ready parts: no wiring, service or config loading",
        ),
    ],
)
def test_layer_does_not_import_upwards(layer: str, forbidden: tuple[str, ...]) -> None:
    """Modules of a layer import nothing from the layers above it."""
    assert offenders(layer, forbidden) == {}


def test_contract_modules_import_only_each_other() -> None:
    """messages, errors, wire, exit_codes and settings import nothing of ours but each other."""
    contract = {f"stream_service.{name}" for name in CONTRACT}
    bad = {
        module: sorted(i for i in imported if not any(i == c or i.startswith(c + ".") for c in contract))
        for module, imported in MODULES.items()
        if module in contract
    }
    assert {module: hits for module, hits in bad.items() if hits} == {}


def test_only_config_reads_the_environment() -> None:
    """No module of the service but config.py touches os.environ or os.getenv."""
    # localkafka is developer tooling, not the service: it reads JAVA_HOME and its jar cache's place.
    readers = sorted(
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        if module_name(p) != "stream_service.config"
        and not module_name(p).startswith("stream_service.localkafka")
        and any(
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        )
    )
    assert readers == []
