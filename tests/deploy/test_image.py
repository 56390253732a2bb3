"""The container image, built and run for real: buildah (chroot isolation) on a Debian base made by
mmdebstrap, since no registry and no Docker engine are reachable here (deploy/image/build.sh)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs in the lock file
import pytest

from stream_service import __version__
from tests.integration.harness import (
    REPO,
    Outputs,
    ServiceProcess,
    Topics,
    assert_all_answered,
    input_offsets,
    produce,
    unique,
    workload,
)

pytestmark = pytest.mark.integration

BUILD = REPO / "deploy" / "image" / "build.sh"
BUILD_TIMEOUT_S = 900  # a first build makes the Debian base too (~45 s here)
RECORDS = 2_000


def buildah(*args: str, timeout_s: float = 120) -> str:
    """Run buildah on the image store build.sh uses; return its stdout, fail with its stderr."""
    proc = subprocess.run(
        [str(BUILD), "buildah", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    output = proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"buildah {' '.join(args)} failed ({proc.returncode}):\n{output}"
    return proc.stdout


@pytest.fixture(scope="module")
def image() -> str:
    """The image built from deploy/image/Dockerfile (fails, saying what is missing, if it cannot be built)."""
    proc = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    assert proc.returncode == 0, f"deploy/image/build.sh failed:\n{proc.stderr[-4000:]}"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """A working container of the image, removed after the test."""
    name = buildah("from", "--pull-never", image).strip()
    try:
        yield name
    finally:
        buildah("rm", name)


def run_in(container: str, *command: str) -> str:
    return buildah("run", "--isolation", "chroot", container, "--", *command)


def test_image_config_is_what_an_orchestrator_needs(image: str) -> None:
    """Non-root user, SIGTERM, `stream-service` entrypoint, a /healthz health check, port 8080, OCI labels."""
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))["Docker"]["config"]
    assert config["User"] == "10001:10001"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["stream-service"] and config["Cmd"] == ["run"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert "8080/tcp" in config["ExposedPorts"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    for key in ("title", "revision", "created", "licenses", "source", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key


def test_version_runs_as_non_root_without_compilers(container: str) -> None:
    """`stream-service --version` answers inside the image, as uid 10001, and no C compiler is there."""
    assert run_in(container, "stream-service", "--version").strip() == f"stream-service {__version__}"
    assert run_in(container, "id", "-u").strip() == "10001"
    found = run_in(container, "sh", "-c", "command -v gcc cc c++ clang || true")
    assert found.strip() == "", f"compilers in the runtime image: {found}"


def _service_pid(launcher: int) -> int:
    """The stream-service process buildah runs in the container (chroot isolation shares the PID space)."""
    for child in psutil.Process(launcher).children(recursive=True):
        cmdline = child.cmdline()
        if cmdline and cmdline[0].endswith("python3") and any("stream-service" in a for a in cmdline):
            return int(child.pid)
    raise AssertionError("the service process inside the container was not found")


async def test_echo_service_in_the_image_answers_everything_and_drains_on_sigterm(
    container: str, kafka_bootstrap: str
) -> None:
    """Inside the image: `topics create` makes the topics, the echo service answers every input, its
    health check passes, and SIGTERM drains, commits and exits 0."""
    topics = Topics(*(unique(f"image-{role}") for role in ("in", "results", "errors", "group")))
    created = await asyncio.to_thread(
        run_in, container, "stream-service", "topics", "create", "--bootstrap-servers", kafka_bootstrap,
        "--input-topic", topics.input, "--results-topic", topics.results, "--errors-topic", topics.errors,
        "--partitions", "4", "--replication-factor", "1",
    )  # fmt: skip
    assert created.count("created") == 3, created
    await produce(kafka_bootstrap, topics.input, workload(RECORDS).records)
    service = ServiceProcess(kafka_bootstrap, topics, "--processor", "echo")
    service.args = [
        str(BUILD), "buildah", "run", "--isolation", "chroot", container, "--",
        "stream-service", *service.args[service.args.index("run"):],
    ]  # fmt: skip
    await service.start()
    try:
        await service.wait_for("ops.listening", timeout_s=60)
        port = service.ops_port()
        assert port is not None
        async with Outputs(kafka_bootstrap, topics) as out:
            await out.until(out.answered(RECORDS), 120, "every request answered by the containerised service")
        probe = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/healthz', timeout=4)"
        await asyncio.to_thread(run_in, container, "python3", "-c", probe)
        assert service.proc is not None
        psutil.Process(_service_pid(service.proc.pid)).send_signal(signal.SIGTERM)
        code = await service.wait(60)
    finally:
        if service.proc is not None and service.proc.returncode is None:
            for child in psutil.Process(service.proc.pid).children(recursive=True):
                child.kill()  # buildah does not pass its own SIGKILL on to the container
            await service.kill()
    assert code == 0, service.stderr.decode()[-3000:]
    assert any(line.get("event") == "service.stopped" for line in service.lines)
    assert_all_answered(out, await input_offsets(kafka_bootstrap, topics.input))
