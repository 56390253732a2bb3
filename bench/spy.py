"""``python -m bench.spy``: sample the service under W1 or W2 with py-spy; the top frames as markdown.

    .venv/bin/python -m bench.spy --bootstrap-servers HOST:PORT --workload w1       # 200,000 echo
    .venv/bin/python -m bench.spy --bootstrap-servers HOST:PORT --workload w1-eos   # exactly once
    .venv/bin/python -m bench.spy --bootstrap-servers HOST:PORT --workload w2 --concurrency 256

The service runs as ``stream_service run`` in a child process with the benchmark's settings (as
in ``python -m bench``); once it logs ``partitions.assigned``, ``py-spy record --format raw
--function`` attaches to it and samples until the group has committed the whole backlog. A
sampling profiler does not slow the Python calls it measures (cProfile, :mod:`bench.profile`,
roughly doubles them), so the shares are those of a normal run. It prints self time (the frame on
top of the stack), total time (the frame anywhere on the stack) and self time by module, as
shares of the busy samples -- samples in ``selectors`` (waiting in epoll) count as idle -- ready
to paste into bench/ANALYSIS.md; the raw stacks stay in ``--keep`` when given.

Needs the ``py-spy`` package (``pip install py-spy``) and ptrace rights on the child (root, or
``kernel.yama.ptrace_scope`` 0 for the same user; in a container ``CAP_SYS_PTRACE``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

from bench import plugins
from bench.broker import Progress, delete_topics, new_outputs
from bench.child import Child, service_argv
from bench.runs import Bench, produce_backlog, say
from bench.suite import ECHO, EXACTLY_ONCE

WORKLOADS = ("w1", "w1-eos", "w2")
IDLE_MARKERS = ("(selectors.py:",)  # a sample on top of select() is the loop waiting, not working
TRUNK_SHARE = 0.95  # frames on nearly every busy stack (the event loop's own) say nothing in "total"
_DONE_TIMEOUT_S = 600.0


class Stack(NamedTuple):
    frames: tuple[str, ...]  # outermost first, as py-spy writes them
    samples: int  # how often py-spy saw this stack


class Share(NamedTuple):
    name: str
    samples: int
    share: float  # of the busy samples


class Profile(NamedTuple):
    samples: int
    idle: int
    self_time: list[Share]
    total_time: list[Share]
    by_module: list[Share]


def parse_raw(text: str) -> list[Stack]:
    """py-spy's ``--format raw`` (collapsed stacks: ``frame;frame;... count`` per line)."""
    stacks = []
    for line in text.splitlines():
        head, _, count = line.rstrip().rpartition(" ")
        if head and count.isdigit():
            stacks.append(Stack(tuple(head.split(";")), int(count)))
    return stacks


def module_of(frame: str) -> str:
    """The module group of a frame ``function (path:line)``: our files one by one, libraries by package."""
    path = frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]
    if path.startswith("stream_service/") or path.startswith("bench/"):
        return path
    if path.startswith("aiokafka/"):
        parts = path.split("/")
        return "aiokafka/" + parts[1].removesuffix(".py") if len(parts) > 1 else "aiokafka"
    if path.startswith("asyncio/"):
        return "asyncio"
    return path.split("/", 1)[0].removesuffix(".py") or "?"


def summarise(stacks: Iterable[Stack], top: int = 20) -> Profile:
    """Self, total and per-module self shares of the busy samples (idle ones are counted apart)."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    samples = idle = 0
    for stack in stacks:
        samples += stack.samples
        leaf = stack.frames[-1]
        if any(marker in leaf for marker in IDLE_MARKERS):
            idle += stack.samples
            continue
        own[leaf] += stack.samples
        modules[module_of(leaf)] += stack.samples
        for frame in set(stack.frames):
            anywhere[frame] += stack.samples
    busy = samples - idle

    def shares(counter: Counter[str], limit: float = 1.0) -> list[Share]:
        rows = [Share(n, c, c / busy) for n, c in counter.most_common() if busy and c / busy <= limit]
        return rows[:top]

    return Profile(samples, idle, shares(own), shares(anywhere, TRUNK_SHARE), shares(modules))


def render(profile: Profile, title: str, expected: int | None = None) -> str:
    """The profile as markdown tables; ``expected`` is rate × seconds sampled (py-spy drops the
    samples in which the thread was idle, so busy ÷ expected is about the main thread's CPU share)."""
    busy = profile.samples - profile.idle
    of = f" of {expected:,} expected (busy {busy / expected:.0%} of the time)" if expected else ""

    def table(rows: list[Share], what: str) -> list[str]:
        out = [f"| share of busy samples | {what} |", "| --- | --- |"]
        out += [f"| {r.share:5.1%} | `{r.name}` |" for r in rows]
        return [*out, ""]

    lines = [
        f"### {title}",
        "",
        f"{profile.samples:,} samples{of}: {busy:,} busy, {profile.idle:,} waiting in `select()` (idle).",
        "",
        "Self time (the frame on top of the stack):",
        "",
        *table(profile.self_time, "function (file:first line)"),
        f"Total time (the frame anywhere on the stack; frames on more than {TRUNK_SHARE:.0%} of the "
        "stacks, the event loop's trunk, left out):",
        "",
        *table(profile.total_time, "function (file:first line)"),
        "Self time by module:",
        "",
        *table(profile.by_module, "module"),
    ]
    return "\n".join(lines)


def py_spy() -> str:
    """The py-spy executable: beside this interpreter (a venv) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("python -m bench.spy: py-spy is not installed (pip install py-spy)")
    return found


async def record(bench: Bench, workload: str, count: int, concurrency: int, rate: int, out: Path) -> float:
    """Run the service over a fresh backlog with py-spy attached after it joined; the seconds sampled."""
    input_topic = await produce_backlog(bench, f"spy-{workload}", count, seed=900)
    outputs = await new_outputs(bench.bootstrap, f"spy-{workload}")
    if workload == "w2":
        settings = {"executor.concurrency": concurrency, "cache.enabled": False, "processor.hrv": False}
        argv_for = partial(service_argv, processor="python:bench.plugins:sleep20", settings=settings)
    else:
        argv_for = partial(
            service_argv, processor="echo", settings=EXACTLY_ONCE if workload == "w1-eos" else ECHO
        )
    child = Child(argv_for(bench.bootstrap, input_topic, outputs), bench.log_path(f"spy-{workload}"))
    spy: asyncio.subprocess.Process | None = None
    try:
        async with Progress(bench.bootstrap, input_topic, outputs) as progress:
            target = await progress.input_end()
            await child.start()
            await child.wait_assigned()
            assert child.proc is not None
            command = [py_spy(), "record", "--pid", str(child.proc.pid), "--format", "raw", "--function"]
            spy = await asyncio.create_subprocess_exec(
                *command, "--rate", str(rate), "--output", str(out), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            started = time.monotonic()
            async with asyncio.timeout(_DONE_TIMEOUT_S):
                while await progress.committed() < target:
                    child.check_alive()
                    if spy.returncode is not None:
                        break
                    await asyncio.sleep(0.02)
            sampled = time.monotonic() - started
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            _, err = await spy.communicate()
            if not out.exists():  # noqa: ASYNC240 - one stat, after py-spy has exited
                raise RuntimeError(
                    f"py-spy wrote nothing (exit {spy.returncode}): {err.decode(errors='replace')}"
                )
            return sampled
    finally:
        if spy is not None and spy.returncode is None:
            spy.kill()
        await child.stop()
        await delete_topics(bench.bootstrap, [input_topic, outputs.results, outputs.errors])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spy", description=__doc__)
    parser.add_argument("--workload", choices=WORKLOADS, default="w1")
    parser.add_argument("--count", type=int, help="requests (default: 200,000 for W1, 40,000 for W2)")
    parser.add_argument("--concurrency", type=int, default=256, help="W2's executor.concurrency")
    parser.add_argument("--rate", type=int, default=200, help="samples per second (default 200)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="keep py-spy's raw stacks in this file")
    parser.add_argument("--bootstrap-servers", help="default: provision a LocalKafka(nodes=1)")
    args = parser.parse_args(argv)
    count = args.count or (40_000 if args.workload == "w2" else 200_000)
    kafka = None
    if args.bootstrap_servers:
        bootstrap = args.bootstrap_servers
    else:
        from stream_service.localkafka import LocalKafka

        say("provisioning a local Kafka broker (LocalKafka, 1 node) ...")
        kafka = LocalKafka(nodes=1).start()
        bootstrap = kafka.bootstrap_servers
    log_dir = Path(tempfile.mkdtemp(prefix="bench-spy-"))
    out = args.keep or log_dir / "stacks.txt"
    try:
        bench = Bench(bootstrap, log_dir)
        sampled = asyncio.run(record(bench, args.workload, count, args.concurrency, args.rate, out))
    finally:
        if kafka is not None:
            kafka.stop()
    profile = summarise(parse_raw(out.read_text()), args.top)
    what = {
        "w1": "W1, at least once",
        "w1-eos": "W1, exactly once",
        "w2": f"W2, C = {args.concurrency}, sleep {plugins.SLEEP20_S * 1000:g} ms",
    }[args.workload]
    title = f"py-spy: {what}, {count:,} requests, {sampled:.1f} s sampled at {args.rate} Hz"
    print(render(profile, title, expected=round(sampled * args.rate)))
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
