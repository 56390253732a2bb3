"""Where the benchmark ran: CPU, RAM, kernel, and the versions of Python, Kafka and the libraries."""

from __future__ import annotations

import glob
import os
import platform
import re

import aiokafka
import msgspec
import psutil  # type: ignore[import-untyped]  # no stubs in the lock file

import stream_service
from bench.results import Machine

_KAFKA_JAR = re.compile(r"kafka(?:-server|-clients|_[\d.]+)-(\d+\.\d+\.\d+[\w.-]*?)\.jar$")


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` in /proc/cpuinfo text, or the platform's processor string."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def kafka_version_from_jars(paths: list[str]) -> str | None:
    """The Kafka version named by broker jars (``kafka-server-4.1.1.jar``, ``kafka_2.13-3.9.0.jar``)."""
    for path in sorted(paths):
        match = _KAFKA_JAR.search(os.path.basename(path))
        if match:
            return match.group(1)
    return None


def detect_kafka_version(bootstrap: str) -> str:
    """Best effort for an external broker on this machine: the jars on the classpath of the JVM
    listening on the first bootstrap port. ``unknown`` when it is elsewhere or not readable."""
    host, _, port_text = bootstrap.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port_text.isdigit():
        return "unknown (remote broker)"
    port = int(port_text)
    try:
        pids = {
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        }
        for pid in pids:
            cmdline = psutil.Process(pid).cmdline()
            for i, arg in enumerate(cmdline[:-1]):
                if arg in ("-cp", "-classpath"):
                    jars = [j for entry in cmdline[i + 1].split(":") for j in glob.glob(entry)]
                    if (version := kafka_version_from_jars(jars)) is not None:
                        return version
    except (psutil.Error, OSError):
        pass
    return "unknown"


def describe_machine(kafka_version: str) -> Machine:
    try:
        with open("/proc/cpuinfo") as fh:
            model = cpu_model(fh.read())
    except OSError:
        model = platform.processor() or "unknown"
    return Machine(
        cpu_model=model,
        nproc=os.cpu_count() or 0,
        ram_gb=psutil.virtual_memory().total / 2**30,
        kernel=f"{platform.system()} {platform.release()}",
        python=f"{platform.python_implementation()} {platform.python_version()}",
        kafka=kafka_version,
        aiokafka=aiokafka.__version__,
        msgspec=msgspec.__version__,
        stream_service=stream_service.__version__,
        load_avg_start=[round(x, 2) for x in os.getloadavg()],
    )
