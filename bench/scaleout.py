"""``python -m bench.scaleout``: throughput of 1, 2 and 4 replicas of one consumer group, I/O-bound.

Each replica is a separate ``stream_service run`` process with ``python:bench.plugins:sleep20``
(every request awaits 20 ms, standing for a remote call) and ``executor.concurrency`` 16, so one
replica is bounded at 16 / 20 ms = 800 msg/s by waiting, not by CPU: the question is how close
to N times that N replicas get. All replicas start together on the same pre-produced backlog of
an 8-partition topic; the clock runs from the first ``partitions.assigned`` line of any replica to
the moment the group's committed offsets reach the end of the input (so the rebalances of a
group forming are part of the cost, as they are when an autoscaler adds replicas).

Writes its table into bench/RESULTS.md between the ``scaleout`` markers (``python -m bench``
keeps that block when it rewrites the file), and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.broker import Progress, delete_topics, new_outputs
from bench.child import Child, service_argv
from bench.runs import Bench, produce_backlog, say

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- scaleout:begin -->", "<!-- scaleout:end -->"
PROCESSOR = "python:bench.plugins:sleep20"
WAIT_S = 0.020  # what sleep20 awaits per request
_POLL_S = 0.02


class Run:
    """One run's two rates: over the whole run, and once every replica had its first assignment."""

    def __init__(self, total: float, steady: float) -> None:
        self.total = total
        self.steady = steady


async def run_once(bench: Bench, replicas: int, count: int, concurrency: int, seed: int) -> Run:
    """Run ``replicas`` processes over a fresh backlog of ``count`` requests."""
    name = f"scale{replicas}"
    topic = await produce_backlog(bench, name, count, seed=seed)
    outputs = await new_outputs(bench.bootstrap, name)
    settings = {"executor.concurrency": concurrency, "cache.enabled": False, "processor.hrv": False}
    children = [
        Child(service_argv(bench.bootstrap, topic, outputs, processor=PROCESSOR, settings=settings),
              bench.log_path(f"{name}-{i}"))
        for i in range(replicas)
    ]  # fmt: skip
    try:
        async with Progress(bench.bootstrap, topic, outputs) as progress:
            target = await progress.input_end()
            for child in children:
                await child.start()
            deadline = time.monotonic() + 60.0 + count / 200.0
            formed: tuple[float, int] | None = None  # when every replica was assigned, outputs then
            acked_at: float | None = None
            while await progress.committed() < target:
                for child in children:
                    child.check_alive()
                if formed is None and all(child.scan() is not None for child in children):
                    formed = (time.time(), await progress.output_end())
                if acked_at is None and await progress.output_end() >= target:
                    acked_at = time.time()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: not done in time:\n{children[0].tail()}")
                await asyncio.sleep(_POLL_S)  # the offsets have no change notification
            done = time.time()
        for child in children:
            await child.stop()
        starts = [at for child in children if (at := child.scan()) is not None]
        if not starts or formed is None:
            raise RuntimeError(f"{name}: no partitions.assigned line")
        steady = (target - formed[1]) / ((acked_at or done) - formed[0])
        return Run(count / (done - min(starts)), steady)
    finally:
        for child in children:
            await child.stop()
        await delete_topics(bench.bootstrap, [topic, outputs.results, outputs.errors])


def render(results: dict[int, list[Run]], *, count: int, concurrency: int, command: str, broker: str) -> str:
    """The markdown section: per replica count, the median rate, speed-up and share of linear."""
    bound = concurrency / WAIT_S
    base = statistics.median(r.total for r in results[min(results)])
    lines = [
        BEGIN,
        "## Scale-out: replicas of one consumer group, I/O-bound processor",
        "",
        f"Command: `{command}` ({broker}). Each replica is its own `stream_service run` process with "
        f"`{PROCESSOR}` (awaits {WAIT_S * 1000:g} ms per request) and `executor.concurrency={concurrency}`, "
        f"so one replica is bounded at {bound:,.0f} msg/s by waiting, not CPU. {count:,} requests in an "
        "8-partition topic; clock from the first replica's `partitions.assigned` to the group's last commit, "
        "so the rebalances of the group forming count. *Steady* is the rate of the outputs acknowledged "
        "after every replica had its first assignment. Medians of the repetitions; machine as above "
        "(2 cores, shared with the broker).",
        "",
        "| replicas | msg/s | runs | speed-up vs 1 | of linear | steady msg/s | steady vs N x bound |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in sorted(results):
        median = statistics.median(r.total for r in results[n])
        steady = statistics.median(r.steady for r in results[n])
        runs = ", ".join(f"{r.total:,.0f}" for r in results[n])
        speedup = median / base
        lines.append(
            f"| {n} | {median:,.0f} | {runs} | {speedup:.2f}x | {speedup / n:.0%} "
            f"| {steady:,.0f} | {steady / (n * bound):.0%} |"
        )
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put ``section`` in place of the marked block of ``path``, or append it."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def preserved_section(path: Path) -> str:
    """The marked scale-out block of ``path`` (empty when none): kept when the suite rewrites the file."""
    text = path.read_text() if path.exists() else ""
    if BEGIN not in text or END not in text:
        return ""
    return BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"


def _replica_counts(text: str) -> list[int]:
    counts = [int(p) for p in text.split(",") if p.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("give replica counts like 1,2,4")
    return sorted(set(counts))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--replicas", type=_replica_counts, default=[1, 2, 4], help="default 1,2,4")
    parser.add_argument("--count", type=int, default=24_000, help="requests per run (default 24,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="executor.concurrency per replica")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions (default 2)")
    parser.add_argument("--bootstrap-servers", help="default: provision a LocalKafka(nodes=1)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="file whose scale-out block is replaced")
    args = parser.parse_args(argv)
    command = "python -m bench.scaleout" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    kafka = None
    if args.bootstrap_servers:
        bootstrap, broker = args.bootstrap_servers, "external broker"
    else:
        from stream_service.localkafka import LocalKafka

        say("provisioning a local Kafka broker (LocalKafka, 1 node) ...")
        kafka = LocalKafka(nodes=1).start()
        bootstrap, broker = kafka.bootstrap_servers, "provisioned LocalKafka(nodes=1)"
    log_dir = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    results: dict[int, list[Run]] = {n: [] for n in args.replicas}

    async def run_all() -> None:
        bench = Bench(bootstrap, log_dir)
        for rep in range(args.reps):
            for n in args.replicas:
                run = await run_once(bench, n, args.count, args.concurrency, seed=100 * rep + n)
                results[n].append(run)
                say(f"rep {rep + 1}: {n} replica(s): {run.total:,.0f} msg/s, steady {run.steady:,.0f}")

    try:
        asyncio.run(run_all())
    finally:
        if kafka is not None:
            kafka.stop()
    section = render(results, count=args.count, concurrency=args.concurrency, command=command, broker=broker)
    write_section(args.output, section)
    print(section)
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
