"""Packaging: what the wheel ships, and the two lock files (runtime, and dev on the same pins)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = REPO / "requirements.lock"
DEV_LOCK = REPO / "requirements-dev.lock"
# What must never reach the production image (the dev extras and what only they bring in).
DEV_ONLY = {
    "pytest",
    "mypy",
    "ruff",
    "hypothesis",
    "testcontainers",
    "docker",
    "kubernetes-validate",
    "py-spy",
}
# The extras a configuration switches on (processor.name=http, tracing.enabled, a compression codec):
# the image installs requirements.lock alone, so it must hold them all.
RUNTIME_EXTRAS = ("http", "otel", "compression")
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)")


def pins(lock: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of every requirement in a `uv pip compile --generate-hashes` file."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name = match.group(1).lower().replace("_", "-")
            found[name] = (match.group(2), frozenset())
        elif "--hash=sha256:" in line and name:
            version, hashes = found[name]
            found[name] = (version, hashes | {line.split("--hash=sha256:")[1].split()[0]})
    return found


def normalise(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_wheel_ships_the_broker_pom_and_profiles(tmp_path: Path) -> None:
    """A built wheel contains the Maven POM of the local broker and the writing profiles, so an installed
    stream-service can run `kafka fetch` from any directory."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "stream_service", source / "stream_service", ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("stream_service-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "stream_service/localkafka/pom.xml" in names
    assert "stream_service/py.typed" in names
    assert {n for n in names if n.startswith("stream_service/processors/profiles/")} == {
        f"stream_service/processors/profiles/{p.name}"
        for p in (REPO / "stream_service/processors/profiles").glob("*.toml")
    }


def test_runtime_lock_holds_the_runtime_dependencies_and_no_dev_tool() -> None:
    """requirements.lock pins every runtime dependency of pyproject.toml, each with hashes, and no test,
    lint or container tool."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = pins(RUNTIME_LOCK)
    assert {normalise(r) for r in project["dependencies"]} <= set(runtime)
    assert not DEV_ONLY & set(runtime), f"dev tools in the runtime lock: {DEV_ONLY & set(runtime)}"
    assert all(hashes for _, hashes in runtime.values()), "every pin needs --hash lines"


def test_runtime_lock_holds_the_extras_a_setting_switches_on() -> None:
    """The image (requirements.lock only) can run the http processor, tracing and every codec."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {normalise(r) for extra in RUNTIME_EXTRAS for r in extras[extra]}
    assert wanted <= set(pins(RUNTIME_LOCK)), f"missing: {wanted - set(pins(RUNTIME_LOCK))}"


def test_dev_lock_adds_the_dev_extras_on_the_runtime_pins() -> None:
    """requirements-dev.lock pins every dev extra, and every runtime package at the version and hashes of
    requirements.lock, so installing both together is consistent."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    assert {normalise(r) for r in project["optional-dependencies"]["dev"]} <= set(dev)
    differing = {name for name, pin in runtime.items() if dev.get(name) != pin}
    assert not differing, f"requirements-dev.lock pins these differently from requirements.lock: {differing}"
    assert all(hashes for _, hashes in dev.values()), "every pin needs --hash lines"
