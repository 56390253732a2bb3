"""Start JVM child processes that cannot outlive this Python process.

Why a dedicated spawner thread: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child
exits, not when the process does. Forking from a thread-pool worker (``asyncio.to_thread``) or a
short-lived readiness thread would SIGKILL the broker as soon as that thread ended. So every fork
happens on one daemon thread that lives as long as the interpreter; daemon threads are not joined at
exit, so ``atexit`` hooks can still stop brokers gracefully before the process (and the thread) ends.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
_DIR_PREFIX = "localkafka-"
_OWNER_FILE = "owner.pid"


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl: Callable[[int, int], int] = libc.prctl
    return prctl


# Loaded in the parent: the child between fork and exec should only call, not dlopen.
_PRCTL = _load_prctl()


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class _Spawner:
    """Runs callables on one long-lived daemon thread (see the module docstring for why)."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="localkafka-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            fn, future = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                future.set_exception(exc)

    def call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._work.put((fn, future))
        return future.result()


_spawner_lock = threading.Lock()
_spawner: _Spawner | None = None


def _get_spawner() -> _Spawner:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
        return _spawner


def spawn(cmd: Sequence[str], *, cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, output appended to ``log_path``, killed if we die.

    ``start_new_session`` keeps a terminal's Ctrl-C away from the JVM (we stop it ourselves, in
    order); the parent-death signal covers a parent that is SIGKILLed and never runs ``atexit``.
    """
    parent_pid = os.getpid()

    def start() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                list(cmd),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(parent_pid),
            )

    return _get_spawner().call(start)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def owned_temp_dir() -> Path:
    """A fresh temp directory stamped with our pid, after deleting those of launchers that died.

    A SIGKILLed launcher never runs its cleanup; its JVMs die with it (parent-death signal) but its
    data directory would stay in /tmp forever, so the next launcher removes it.
    """
    for root in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
        try:
            os.kill(int((root / _OWNER_FILE).read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(root, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: no owner file yet, or the owner is another user's process
    root = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
    (root / _OWNER_FILE).write_text(f"{os.getpid()}\n")
    return root
