"""A real Apache Kafka cluster (KRaft, combined broker+controller nodes) on loopback, without Docker."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from stream_service.localkafka.jars import (
    JavaRuntime,
    LocalKafkaError,
    Toolchain,
    class_archive_path,
    ensure_jars,
)
from stream_service.localkafka.probe import listed_brokers, out_of_sync, port_open
from stream_service.localkafka.process import owned_temp_dir, spawn, tail
from stream_service.localkafka.properties import (
    LOG4J2_PROPERTIES,
    NodeAddress,
    new_cluster_id,
    node_addresses,
    node_properties,
    render_properties,
)

log = logging.getLogger(__name__)

# Full JIT on purpose (no TieredStopAtLevel=1): benchmarks run against this broker. The G1 settings
# are the ones kafka-server-start.sh uses.
DEFAULT_JVM_OPTS = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)
_STARTUP_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0
_FORMAT_TIMEOUT_S = 120.0
_POLL_INTERVAL_S = 0.05
_BIND_ATTEMPTS = 3


@dataclass
class _Node:
    address: NodeAddress
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None)
    archive_dump: Path | None = None  # where this JVM writes a class-data archive when it exits

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    @property
    def properties_path(self) -> Path:
        return self.directory / "server.properties"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalKafka:
    """A throw-away Kafka cluster of ``nodes`` JVMs on free loopback ports.

    Guarantees: after :meth:`start` returns, every node accepts connections and answers a metadata
    request listing all running nodes; :attr:`bootstrap_servers` is ``host:port,...``. Nothing
    outlives this object: :meth:`stop` (also run by the context manager and at interpreter exit)
    sends SIGTERM, then SIGKILL after ``stop_timeout_s``, and deletes the data directory; a SIGKILLed
    Python process takes the JVMs with it (Linux parent-death signal). Raises :class:`LocalKafkaError`
    when java/mvn are missing or a node fails to come up (with the tail of its log).

    The API is synchronous and blocking; from async code call it through ``asyncio.to_thread``.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        version: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        jvm_opts: Sequence[str] = DEFAULT_JVM_OPTS,
        overrides: Mapping[str, str] | None = None,
        startup_timeout_s: float = _STARTUP_TIMEOUT_S,
        stop_timeout_s: float = _STOP_TIMEOUT_S,
        toolchain: Toolchain | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.node_count = nodes
        self.version = version
        self.host = host
        self._first_port = port
        self._jvm_opts = tuple(jvm_opts)
        self._overrides = dict(overrides or {})
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._toolchain = toolchain or Toolchain.from_env()
        self._lock = threading.RLock()
        self._nodes: dict[int, _Node] = {}
        self._root: Path | None = None
        self._java: JavaRuntime | None = None
        self._lib: Path | None = None
        self.cluster_id = ""
        self.started_in_s: float | None = None

    # -- public surface ---------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        if not self._nodes:
            raise LocalKafkaError("the cluster has not been started")
        return ",".join(node.address.bootstrap for node in self._nodes.values())

    @property
    def node_ids(self) -> list[int]:
        return list(self._nodes)

    @property
    def data_dir(self) -> Path:
        if self._root is None:
            raise LocalKafkaError("the cluster has not been started")
        return self._root

    def address(self, node_id: int) -> NodeAddress:
        return self._node(node_id).address

    def pid(self, node_id: int) -> int | None:
        node = self._node(node_id)
        return node.process.pid if node.running() and node.process is not None else None

    def is_running(self, node_id: int) -> bool:
        return self._node(node_id).running()

    def log_tail(self, node_id: int, lines: int = 40) -> str:
        return tail(self._node(node_id).log_path, lines)

    def start(self) -> LocalKafka:
        """Fetch jars if needed, format storage, start every node at once and wait until all are ready."""
        with self._lock:
            if self._root is not None:
                raise LocalKafkaError("already started")
            self._java = self._toolchain.require_java()
            self._lib = ensure_jars(self.version, toolchain=self._toolchain)
            began = time.monotonic()
            atexit.register(self.stop)
            try:
                self._start_with_retries()
            except BaseException:
                self.stop()
                raise
            self.started_in_s = time.monotonic() - began
            log.info(
                "local Kafka ready: bootstrap=%s nodes=%d started_in_s=%.1f data=%s",
                self.bootstrap_servers,
                self.node_count,
                self.started_in_s,
                self._root,
            )
            return self

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after the timeout) and delete the data directory."""
        with self._lock:
            atexit.unregister(self.stop)
            self._terminate(list(self._nodes.values()), signal.SIGTERM, self.stop_timeout_s)
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def stop_node(self, node_id: int, timeout_s: float | None = None) -> None:
        """Gracefully stop one node (SIGTERM, SIGKILL after the timeout); its data and ports are kept."""
        with self._lock:
            stop_s = self.stop_timeout_s if timeout_s is None else timeout_s
            self._terminate([self._node(node_id)], signal.SIGTERM, stop_s)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would; its data and ports are kept for :meth:`start_node`."""
        with self._lock:
            self._terminate([self._node(node_id)], signal.SIGKILL, self.stop_timeout_s)

    def start_node(self, node_id: int, *, wait: bool = True) -> None:
        """Restart a stopped node with its old data directory and ports; by default wait until ready."""
        with self._lock:
            node = self._node(node_id)
            if node.running():
                raise LocalKafkaError(f"node {node_id} is already running")
            self._launch(node)
            if wait:
                self.wait_ready([node_id])

    def wait_ready(self, node_ids: Iterable[int] | None = None, timeout_s: float | None = None) -> None:
        """Wait until each node's client port accepts connections and a metadata request lists it."""
        ids = list(self._nodes if node_ids is None else node_ids)
        deadline = time.monotonic() + (self.startup_timeout_s if timeout_s is None else timeout_s)
        pending = set(ids)
        while pending:
            # No event tells us a JVM opened its port, so poll it; a broker opens its client listener
            # only once the controller has unfenced it.
            for node_id in sorted(pending):
                node = self._node(node_id)
                self._raise_if_exited(node)
                if port_open(node.address.host, node.address.port):
                    pending.discard(node_id)
            if pending:
                self._check_deadline(deadline, pending)
                time.sleep(_POLL_INTERVAL_S)
        expected = {i for i in self._nodes if self._nodes[i].running()}
        for node_id in ids:
            self._wait_listed(self._node(node_id), expected, deadline)

    def wait_in_sync(self, topics: Sequence[str], timeout_s: float = 60.0) -> None:
        """Wait until every partition of ``topics`` has a leader and a full ISR (before injecting faults)."""
        deadline = time.monotonic() + timeout_s
        while lagging := out_of_sync(self.bootstrap_servers, topics):
            if time.monotonic() > deadline:
                raise LocalKafkaError(f"not in sync after {timeout_s} s: {lagging}")
            time.sleep(0.2)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------------

    def _node(self, node_id: int) -> _Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise LocalKafkaError(f"no node {node_id}; nodes are {sorted(self._nodes)}") from None

    def _start_with_retries(self) -> None:
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            self._prepare()
            for node in self._nodes.values():
                self._launch(node)
            try:
                self.wait_ready()
            except LocalKafkaError as exc:
                # A free port picked a moment ago can be taken before the JVM binds it: try new ones,
                # unless the caller pinned the port (then a retry would fail the same way).
                lost_race = "Address already in use" in str(exc)
                if not lost_race or self._first_port or attempt == _BIND_ATTEMPTS:
                    raise
                log.warning("local Kafka lost a port race, retrying with new ports (attempt %d)", attempt)
                self._terminate(list(self._nodes.values()), signal.SIGKILL, self.stop_timeout_s)
                if self._root is not None:
                    shutil.rmtree(self._root, ignore_errors=True)
                    self._root = None
            else:
                return

    def _prepare(self) -> None:
        self._root = owned_temp_dir()
        log4j = self._root / "log4j2.properties"
        log4j.write_text(LOG4J2_PROPERTIES)
        self.cluster_id = new_cluster_id()
        addresses = node_addresses(self.node_count, self.host, self._first_port)
        self._nodes = {}
        for address in addresses:
            directory = self._root / f"node-{address.node_id}"
            (directory / "data").mkdir(parents=True)
            props = node_properties(address, addresses, directory / "data", self._overrides)
            node = _Node(address=address, directory=directory)
            node.properties_path.write_text(render_properties(props))
            self._nodes[address.node_id] = node
        self._format_storage()

    def _java_cmd(self, main_class: str, *args: str, dump_to: Path | None = None) -> list[str]:
        assert self._root is not None and self._lib is not None and self._java is not None
        archive = class_archive_path(self._lib, self._java)
        if dump_to is not None:
            cds = [f"-XX:ArchiveClassesAtExit={dump_to}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        elif archive.is_file():
            # A stale or foreign archive is ignored by the JVM (-Xshare:auto), never fatal.
            cds = [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        else:
            cds = []
        return [
            self._java.path,
            *self._jvm_opts,
            *cds,
            f"-Dlog4j2.configurationFile={self._root / 'log4j2.properties'}",
            "-cp",
            f"{self._lib}/*",  # expanded by java itself, not a shell
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        # One short JVM per node, all at once: they are independent and each takes ~2 s.
        jobs = []
        for node in self._nodes.values():
            cmd = self._java_cmd(
                "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(node.properties_path)
            )
            format_log = node.directory / "format.log"
            jobs.append((node, format_log, spawn(cmd, cwd=node.directory, log_path=format_log)))
        try:
            for node, format_log, proc in jobs:
                try:
                    code = proc.wait(timeout=_FORMAT_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    code = -1
                if code != 0:
                    raise LocalKafkaError(
                        f"formatting storage of node {node.address.node_id} failed (exit {code}):\n"
                        f"{tail(format_log)}"
                    )
        finally:
            # On failure or Ctrl-C, the other formatters must not keep writing into a directory
            # that stop() is about to delete.
            for _, _, proc in jobs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def _launch(self, node: _Node) -> None:
        assert self._lib is not None and self._java is not None
        # No class-data archive yet: node 1 writes one when it stops gracefully (the JVM dumps the
        # classes it loaded at exit), so later starts skip most class loading and verification.
        dump_to = None
        archive = class_archive_path(self._lib, self._java)
        if node.address.node_id == 1 and not archive.exists():
            dump_to = archive.with_name(f"{archive.name}.{os.getpid()}-{node.directory.parent.name}.tmp")
        node.archive_dump = dump_to
        cmd = self._java_cmd("kafka.Kafka", str(node.properties_path), dump_to=dump_to)
        node.process = spawn(cmd, cwd=node.directory, log_path=node.log_path)
        (node.directory / "pid").write_text(f"{node.process.pid}\n")

    def _keep_archive(self, node: _Node, stopped_cleanly: bool) -> None:
        dump, node.archive_dump = node.archive_dump, None
        if dump is None or not dump.exists():
            return
        if stopped_cleanly and dump.stat().st_size > 0 and self._lib is not None and self._java is not None:
            os.replace(dump, class_archive_path(self._lib, self._java))  # atomic: readers never see half
        else:
            dump.unlink(missing_ok=True)

    def _terminate(self, nodes: Sequence[_Node], sig: signal.Signals, timeout_s: float) -> None:
        # Signal all first, then wait on a shared deadline: quorum members shut down together.
        alive = [n for n in nodes if n.running()]
        for node in alive:
            assert node.process is not None
            node.process.send_signal(sig)
        deadline = time.monotonic() + timeout_s
        for node in alive:
            assert node.process is not None
            clean = sig != signal.SIGKILL
            try:
                node.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("node %d did not stop within %.0f s, killing it", node.address.node_id, timeout_s)
                node.process.kill()
                node.process.wait()
                clean = False
            (node.directory / "pid").unlink(missing_ok=True)
            self._keep_archive(node, clean)

    def _raise_if_exited(self, node: _Node) -> None:
        if node.process is None or node.process.poll() is not None:
            code = None if node.process is None else node.process.returncode
            raise LocalKafkaError(
                f"Kafka node {node.address.node_id} exited (code {code}) before it was ready; "
                f"log tail:\n{tail(node.log_path)}"
            )

    def _check_deadline(self, deadline: float, pending: Iterable[int]) -> None:
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- node {i} ---\n{tail(self._node(i).log_path)}" for i in sorted(pending))
            raise LocalKafkaError(f"Kafka nodes {sorted(pending)} not ready in time; log tails:\n{tails}")

    def _wait_listed(self, node: _Node, expected: set[int], deadline: float) -> None:
        """Ask ``node`` for cluster metadata until it lists every running node."""
        last_error = ""
        while True:
            self._raise_if_exited(node)
            try:
                listed = listed_brokers(node.address.bootstrap)
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"; retried
                last_error = repr(exc)
            else:
                if expected <= listed:
                    return
                last_error = f"lists {sorted(listed)}, want {sorted(expected)}"
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"node {node.address.node_id} metadata not ready in time ({last_error}); "
                    f"log:\n{tail(node.log_path)}"
                )
            time.sleep(0.2)
