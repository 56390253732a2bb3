"""What a local broker is told: ``server.properties`` per node, the log4j2 config, ids and ports.

Pure functions (apart from binding sockets to find free ports), so they are unit-tested without a JVM.
"""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

# Root at WARN keeps a test broker's log small; the one INFO line we want is "Kafka Server started".
LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = info
"""


@dataclass(frozen=True)
class NodeAddress:
    """One node's id and its two loopback listeners (clients and the controller quorum)."""

    node_id: int
    host: str
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def voter(self) -> str:
        return f"{self.node_id}@{self.host}:{self.controller_port}"


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form: a UUID as 22 characters of unpadded base64url.

    Like Kafka's ``Uuid.randomUuid`` it never starts with ``-``, which ``StorageTool -t`` would read
    as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def pick_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free on ``host`` a moment ago.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out one port twice.
    Another process may still take a port before the broker binds it; the launcher retries on that.
    """
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def node_addresses(node_count: int, host: str = "127.0.0.1", first_port: int = 0) -> list[NodeAddress]:
    """Addresses for nodes ``1..node_count``; ``first_port`` pins node 1's client port (0 = any free)."""
    free = [p for p in pick_free_ports(2 * node_count, host) if p != first_port]
    client_ports = [first_port or free.pop(0)] + [free.pop(0) for _ in range(node_count - 1)]
    return [
        NodeAddress(node_id=i + 1, host=host, port=client_ports[i], controller_port=free[i])
        for i in range(node_count)
    ]


def node_properties(
    node: NodeAddress,
    cluster: Sequence[NodeAddress],
    log_dir: Path,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``server.properties`` for one combined broker+controller of ``cluster``, tuned for tests.

    One node: every internal topic has replication factor 1. Three or more: replication factor 3 and
    ``min.insync.replicas=2`` everywhere, unclean election off, so losing one node loses nothing.
    """
    replicas = min(len(cluster), 3)
    min_isr = 1 if replicas == 1 else 2
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": ",".join(n.voter for n in cluster),
        "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": str(replicas),
        # The default of 50 partitions costs seconds of start-up and every coordinator lookup.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        # The default 3 s delay slows every first group join in a test.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        # A SIGKILLed node may re-register only after its old session expires (default 9 s), and a
        # dead node leaves the ISR (so acks=all proceeds) at the same moment: shorter for fault tests.
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "5000",
        # Two cores: the defaults (3 network, 8 io threads) only add contention.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        # The 128 MB default dedupe buffer runs small heaps out of memory (Kafka's test kit uses 2 MB).
        "log.cleaner.dedupe.buffer.size": "2097152",
    }
    props.update(overrides or {})
    return props


def _escape(text: str, *, key: bool) -> str:
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if key:
        out = out.replace("=", "\\=").replace(":", "\\:").replace(" ", "\\ ")
    elif out.startswith(" "):
        out = "\\" + out  # leading blanks of a value are otherwise dropped
    return out.replace("#", "\\#") if key else out


def render_properties(props: Mapping[str, str]) -> str:
    """Java ``.properties`` text, one ``key=value`` per line in the given order."""
    return "".join(f"{_escape(k, key=True)}={_escape(v, key=False)}\n" for k, v in props.items())
