"""The local Kafka launcher's pure parts: properties, ids, ports, the jar cache, child process lifetime."""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from stream_service.localkafka import __main__ as cli
from stream_service.localkafka import jars, properties
from stream_service.localkafka.jars import LocalKafkaError, Toolchain
from stream_service.localkafka.process import owned_temp_dir, spawn
from stream_service.localkafka.properties import NodeAddress

_URLSAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _cluster(n: int) -> list[NodeAddress]:
    return [
        NodeAddress(node_id=i, host="127.0.0.1", port=9000 + i, controller_port=9100 + i)
        for i in range(1, n + 1)
    ]


# -- ids and ports ----------------------------------------------------------------------------------


def test_cluster_id_is_22_char_base64url_of_16_bytes() -> None:
    """A cluster id has Kafka's form: unpadded base64url of a 16-byte UUID."""
    for _ in range(200):
        cluster_id = properties.new_cluster_id()
        assert len(cluster_id) == 22
        assert set(cluster_id) <= _URLSAFE
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id that would start with '-' (read as an option by StorageTool) is redrawn."""
    dash_first = uuid.UUID(bytes=b"\xf8" + b"\x00" * 15)  # top six bits 111110 encode as '-'
    plain = uuid.UUID(bytes=b"\x00" * 16)
    draws = iter([dash_first, plain])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert properties.new_cluster_id() == "A" * 22


def test_free_ports_are_distinct_and_bindable() -> None:
    """Picked ports differ from each other and can be bound right after."""
    ports = properties.pick_free_ports(6)
    assert len(set(ports)) == 6
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_node_addresses_pin_the_first_client_port() -> None:
    """A requested port goes to node 1's client listener; every other port is fresh and distinct."""
    pinned = properties.pick_free_ports(1)[0]
    nodes = properties.node_addresses(3, first_port=pinned)
    assert [n.node_id for n in nodes] == [1, 2, 3]
    assert nodes[0].port == pinned
    all_ports = [p for n in nodes for p in (n.port, n.controller_port)]
    assert len(set(all_ports)) == 6


# -- properties -------------------------------------------------------------------------------------


def test_single_node_properties_replicate_internal_topics_once() -> None:
    """One node: combined roles, itself as the only voter, RF 1 everywhere, test-friendly settings."""
    (node,) = _cluster(1)
    props = properties.node_properties(node, [node], Path("/data/n1"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9101"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9001,CONTROLLER://127.0.0.1:9101"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9001"
    assert props["log.dirs"] == "/data/n1"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.cleaner.dedupe.buffer.size"] == "2097152"
    assert int(props["offsets.topic.num.partitions"]) <= 8


def test_three_node_properties_need_two_in_sync_replicas() -> None:
    """Three nodes: all are voters; RF 3 and min ISR 2 for data and internal topics; no unclean election."""
    nodes = _cluster(3)
    props = properties.node_properties(nodes[1], nodes, Path("/data/n2"))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"


def test_overrides_win_over_defaults() -> None:
    """Caller overrides replace the launcher's settings."""
    (node,) = _cluster(1)
    props = properties.node_properties(node, [node], Path("/d"), {"num.io.threads": "8", "x.y": "z"})
    assert props["num.io.threads"] == "8"
    assert props["x.y"] == "z"


@pytest.mark.parametrize(
    ("props", "text"),
    [
        pytest.param({"a.b": "c"}, "a.b=c\n", id="plain"),
        pytest.param({"log.dirs": "C:\\kafka"}, "log.dirs=C:\\\\kafka\n", id="backslash escaped"),
        pytest.param({"k": "two\nlines"}, "k=two\\nlines\n", id="newline escaped"),
        pytest.param({"a=b": "c"}, "a\\=b=c\n", id="separator in key escaped"),
        pytest.param({"k": " lead"}, "k=\\ lead\n", id="leading blank kept"),
        pytest.param({"z": "1", "a": "2"}, "z=1\na=2\n", id="order kept"),
    ],
)
def test_render_properties(props: dict[str, str], text: str) -> None:
    """Rendering follows java.util.Properties escaping so values survive a round trip."""
    assert properties.render_properties(props) == text


def test_log4j_config_is_warn_with_server_started_line_at_info() -> None:
    """Kafka logs WARN and up, except the 'Kafka Server started' INFO line."""
    text = properties.LOG4J2_PROPERTIES
    assert "rootLogger.level = warn" in text
    assert "name = kafka.server.KafkaRaftServer" in text
    assert "level = info" in text


# -- java and the jar cache -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "major"),
    [
        pytest.param('openjdk version "17.0.15" 2025-04-15', 17, id="openjdk 17"),
        pytest.param('openjdk version "25" 2025-09-16', 25, id="bare major"),
        pytest.param('java version "1.8.0_392"', 8, id="java 8 style"),
        pytest.param('openjdk version "21-ea" 2023-09-19', 21, id="early access"),
    ],
)
def test_parse_java_major(output: str, major: int) -> None:
    """The major Java version is read from both the 1.x and the modern version formats."""
    assert jars.parse_java_major(output) == major


def test_java_missing_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without java or mvn, the prerequisites say both are missing."""
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path))
    missing = jars.missing_prerequisites("9.9.9", Toolchain(java=None, mvn=None))
    assert any("java not found" in m for m in missing)
    assert any(m.startswith("mvn") for m in missing)


def test_old_java_is_rejected(tmp_path: Path) -> None:
    """A java older than 17 is refused with a message that says which version is needed."""
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    with pytest.raises(LocalKafkaError, match="needs Java 17"):
        Toolchain(java=str(fake), mvn=None).require_java()


def _fake_mvn(tmp_path: Path, calls: Path, *, fail: bool = False) -> str:
    """A stand-in for mvn that records its arguments and writes two jars into -DoutputDirectory."""
    script = tmp_path / "mvn"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        + ("echo 'boom: no network' ; exit 3\n" if fail else "")
        + 'for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${a#-DoutputDirectory=}";; esac; done\n'
        'touch "$out/kafka_2.13-9.9.9.jar" "$out/kafka-clients-9.9.9.jar"\n'
    )
    script.chmod(0o755)
    return str(script)


def test_ensure_jars_downloads_once_then_uses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first call runs Maven with the version; later calls need no Maven at all."""
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path / "cache"))
    calls = tmp_path / "calls"
    lib = jars.ensure_jars("9.9.9", toolchain=Toolchain(java=None, mvn=_fake_mvn(tmp_path, calls)))
    assert lib == tmp_path / "cache" / "kafka-9.9.9" / "lib"
    assert sorted(p.name for p in lib.glob("*.jar")) == ["kafka-clients-9.9.9.jar", "kafka_2.13-9.9.9.jar"]
    assert json.loads((lib / ".complete").read_text())["version"] == "9.9.9"
    assert "-Dkafka.version=9.9.9" in calls.read_text()
    pom = tmp_path / "cache" / "kafka-9.9.9" / "pom.xml"
    assert f"-f {pom} " in calls.read_text()
    assert pom.read_bytes() == jars.POM_PATH.read_bytes()

    again = jars.ensure_jars("9.9.9", toolchain=Toolchain(java=None, mvn=None))
    assert again == lib
    assert len(calls.read_text().splitlines()) == 1


def test_unfinished_copy_is_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lib directory without the completion marker (an interrupted download) is fetched again."""
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path / "cache"))
    half = tmp_path / "cache" / "kafka-9.9.9" / "lib"
    half.mkdir(parents=True)
    (half / "kafka_2.13-9.9.9.jar").touch()
    assert jars.cached_lib_dir("9.9.9") is None
    calls = tmp_path / "calls"
    lib = jars.ensure_jars("9.9.9", toolchain=Toolchain(java=None, mvn=_fake_mvn(tmp_path, calls)))
    assert (lib / ".complete").is_file()
    assert calls.read_text().count("dependency:copy-dependencies") == 1


def test_marker_with_missing_jars_is_not_a_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A marker whose jars were deleted since does not count as a complete cache."""
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path))
    lib = jars.lib_dir("9.9.9")
    lib.mkdir(parents=True)
    (lib / ".complete").write_text(json.dumps({"version": "9.9.9", "jars": ["gone.jar"]}))
    assert jars.cached_lib_dir("9.9.9") is None


def test_maven_failure_is_reported_and_leaves_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing Maven run raises with its output and leaves nothing that looks cached."""
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path / "cache"))
    toolchain = Toolchain(java=None, mvn=_fake_mvn(tmp_path, tmp_path / "calls", fail=True))
    with pytest.raises(LocalKafkaError, match="boom: no network"):
        jars.ensure_jars("9.9.9", toolchain=toolchain)
    assert jars.cached_lib_dir("9.9.9") is None
    assert not any(p.name.startswith("lib") for p in (tmp_path / "cache" / "kafka-9.9.9").iterdir())


def test_missing_mvn_with_cold_cache_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without mvn and without a cache, the error says mvn is needed once."""
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path))
    with pytest.raises(LocalKafkaError, match="mvn not found"):
        jars.ensure_jars("9.9.9", toolchain=Toolchain(java=None, mvn=None))


def test_cache_root_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the explicit variable the cache lives under XDG_CACHE_HOME, outside the repository."""
    monkeypatch.delenv(jars.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jars.lib_dir("1.2.3") == tmp_path / "stream-service" / "kafka-1.2.3" / "lib"


# -- child process lifetime -------------------------------------------------------------------------


def _gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie still answers kill(0); its state letter says it is dead.
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_child_dies_when_parent_is_sigkilled(tmp_path: Path) -> None:
    """A process started by spawn() is killed with its parent, even one killed by SIGKILL."""
    code = (
        "import sys, time, pathlib\n"
        "from stream_service.localkafka.process import spawn\n"
        f"d = pathlib.Path({str(tmp_path)!r})\n"
        "p = spawn(['sleep', '60'], cwd=d, log_path=d / 'log')\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=repo)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(child), "the child outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_child_outlives_the_thread_that_asked_for_it(tmp_path: Path) -> None:
    """Spawning from a short-lived thread (like asyncio.to_thread) does not tie the child to that thread."""
    procs: list[subprocess.Popen[bytes]] = []
    worker = threading.Thread(
        target=lambda: procs.append(spawn(["sleep", "30"], cwd=tmp_path, log_path=tmp_path / "log"))
    )
    worker.start()
    worker.join()
    (proc,) = procs
    try:
        time.sleep(0.3)  # a parent-death signal tied to the exited thread would have fired by now
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_data_dirs_of_dead_launchers_are_swept() -> None:
    """A new data directory removes those whose owner process is dead and keeps live or unowned ones."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = Path(tempfile.mkdtemp(prefix="localkafka-"))
    (orphan / "owner.pid").write_text(f"{dead.pid}\n")
    unowned = Path(tempfile.mkdtemp(prefix="localkafka-"))
    mine = owned_temp_dir()
    try:
        assert not orphan.exists()
        assert unowned.exists()
        assert (mine / "owner.pid").read_text().strip() == str(os.getpid())
    finally:
        shutil.rmtree(mine, ignore_errors=True)
        shutil.rmtree(unowned, ignore_errors=True)
        shutil.rmtree(orphan, ignore_errors=True)


# -- command line -----------------------------------------------------------------------------------


def test_register_mounts_kafka_subcommand_with_handler() -> None:
    """register() adds 'kafka start/fetch' whose handler is the shared entry point."""
    parser = argparse.ArgumentParser(prog="stream-service")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["kafka", "start", "--nodes", "3", "--version", "4.1.1"])
    assert args.handler is cli.run
    assert (args.kafka_command, args.nodes, args.version, args.port) == ("start", 3, "4.1.1", 0)
    assert parser.parse_args(["kafka", "fetch"]).kafka_command == "fetch"


def test_fetch_command_reports_a_missing_mvn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """'fetch' with a cold cache and no mvn exits 1 with a message naming mvn."""
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn here
    assert cli.main(["fetch", "--version", "9.9.9"]) == 1
    assert "mvn not found" in capsys.readouterr().err
