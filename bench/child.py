"""The process under test -- ``stream_service run`` or ``bench.raw_loop`` -- as a child process.

It runs in its own interpreter so its CPU time and RSS are its own. Its stdout and stderr go to
a log file (not a pipe the benchmark would have to drain: with audit lines on that is 200,000
lines), which is scanned for the ``partitions.assigned`` line that starts the clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psutil  # type: ignore[import-untyped]  # no stubs in the lock file

from bench.broker import Outputs

REPO = Path(__file__).resolve().parents[1]
ASSIGNED_EVENT = "partitions.assigned"
_POLL_S = 0.02
_STOP_TIMEOUT_S = 60.0


def service_argv(
    bootstrap: str,
    input_topic: str,
    outputs: Outputs,
    /,
    *,
    processor: str,
    executor: str = "async",
    settings: Mapping[str, object] = {},
) -> list[str]:
    """``python -m stream_service run`` for one run; ``settings`` become ``--set KEY=VALUE``."""
    argv = [
        sys.executable, "-m", "stream_service", "run",
        "--bootstrap-servers", bootstrap,
        "--input-topic", input_topic,
        "--results-topic", outputs.results,
        "--errors-topic", outputs.errors,
        "--group-id", outputs.group,
        "--processor", processor,
        "--executor", executor,
        "--metrics-port", "0",
        "--set", "observability.log_format=json",
    ]  # fmt: skip
    for key, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        argv += ["--set", f"{key}={text}"]
    return argv


def raw_loop_argv(
    bootstrap: str,
    input_topic: str,
    outputs: Outputs,
    /,
    *,
    total: int,
    acks1: bool = False,
    concurrency: int | None = None,
    sleep_ms: float = 0.0,
    lineage: bool = False,
) -> list[str]:
    """``python -m bench.raw_loop`` for one run: W1 (a), with ``acks1`` W1 (a'), with
    ``concurrency`` the raw W2 loop; ``lineage`` for the latency runs (answers name their input)."""
    argv = [
        sys.executable, "-m", "bench.raw_loop",
        "--bootstrap-servers", bootstrap,
        "--input-topic", input_topic,
        "--results-topic", outputs.results,
        "--group-id", outputs.group,
        "--total", str(total),
    ]  # fmt: skip
    if acks1:
        argv += ["--acks", "1", "--no-idempotence", "--read-uncommitted"]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency), "--sleep-ms", f"{sleep_ms:g}"]
    if lineage:
        argv.append("--lineage")
    return argv


def assigned_timestamp(line: str) -> float | None:
    """The epoch seconds of a JSON log line if it is the ``partitions.assigned`` event, else None."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("event") != ASSIGNED_EVENT or "timestamp" not in entry:
        return None
    return datetime.fromisoformat(str(entry["timestamp"]).replace("Z", "+00:00")).timestamp()


class Child:
    """One child process with its output in ``log_path``.

    :meth:`wait_assigned` raises RuntimeError (with the tail of the log) when the child exits
    first, or TimeoutError; :meth:`stop` sends SIGTERM, then SIGKILL after 60 s.
    """

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at: float | None = None  # epoch seconds just before the process was spawned
        self.assigned_at: float | None = None
        self._log: IO[bytes] | None = None
        self._read_pos = 0
        self._ps: psutil.Process | None = None

    async def start(self, cpus: list[int] | None = None) -> Child:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self._log = self._open_log()
        self.started_at = time.time()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=self._log, stderr=asyncio.subprocess.STDOUT, env=env, cwd=str(REPO)
        )
        self._ps = psutil.Process(self.proc.pid)
        if cpus is not None:
            self._ps.cpu_affinity(cpus)  # inherited by the worker processes it starts later
        return self

    def _open_log(self) -> IO[bytes]:
        return open(self.log_path, "wb")  # closed in stop(); creating a file does not stall the loop

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def check_alive(self) -> None:
        """Raise RuntimeError, with the end of the log, when the child has exited."""
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(f"{self.argv[2]} exited with {self.proc.returncode}:\n{self.tail()}")

    def scan(self) -> float | None:
        """Read new log lines; return (and remember) the time of ``partitions.assigned`` once seen."""
        if self.assigned_at is not None:
            return self.assigned_at
        with open(self.log_path, "rb") as fh:
            fh.seek(self._read_pos)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1  # only whole lines; a partial one is read next time
        self._read_pos += end
        for line in chunk[:end].splitlines():
            if ASSIGNED_EVENT.encode() in line and (at := assigned_timestamp(line.decode(errors="replace"))):
                self.assigned_at = at
                break
        return self.assigned_at

    def find_event(self, event: str) -> dict[str, Any] | None:
        """The first JSON log line whose ``event`` is ``event`` (the whole log is read: use it on
        short logs, such as the ``ops.listening`` line with the metrics port)."""
        needle = f'"{event}"'.encode()
        try:
            with open(self.log_path, "rb") as fh:
                for line in fh:
                    if needle in line:
                        try:
                            entry = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(entry, dict) and entry.get("event") == event:
                            return entry
        except OSError:
            pass
        return None

    async def wait_assigned(self, timeout_s: float = 120.0) -> float:
        async with asyncio.timeout(timeout_s):
            while (at := self.scan()) is None:
                self.check_alive()
                await asyncio.sleep(_POLL_S)
        return at

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def usage(self) -> dict[str, float]:
        """CPU seconds (own, children's) and RSS in MB (own + children's), and VmHWM of the main process."""
        if self._ps is None or not self.running:
            return {}
        try:
            processes = [self._ps, *self._ps.children(recursive=True)]
            cpu = 0.0
            rss = 0
            for p in processes:
                with p.oneshot():
                    times = p.cpu_times()
                    cpu += times.user + times.system
                    rss += p.memory_info().rss
            times = self._ps.cpu_times()
            cpu += times.children_user + times.children_system  # children that already exited
        except psutil.Error:
            return {}
        return {"cpu_s": cpu, "rss_mb": rss / 2**20, "hwm_mb": _vm_hwm_mb(self._ps.pid)}

    async def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> int:
        proc = self.proc
        try:
            if proc is None:
                return 0
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(timeout_s):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            return proc.returncode or 0
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    async def __aenter__(self) -> Child:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


def _vm_hwm_mb(pid: int) -> float:
    """The kernel's peak-RSS high-water mark of ``pid`` (Linux), 0 where unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
