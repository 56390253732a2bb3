"""``python -m bench``: run the benchmark suite and write RESULTS.md (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import explanations, report
from bench.machine import describe_machine, detect_kafka_version
from bench.results import WORKLOADS, Suite, encode
from bench.runs import Bench, say
from bench.scaleout import preserved_section
from bench.suite import FULL, QUICK, params, run_selected

_HERE = Path(__file__).resolve().parent
_ALIASES = {w.lower(): w for w in WORKLOADS}


def parse_only(text: str | None) -> set[str]:
    """The workloads named by ``--only`` (case-insensitive, comma-separated); all when None."""
    if text is None:
        return set(WORKLOADS)
    chosen = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if part not in _ALIASES:
            raise argparse.ArgumentTypeError(f"unknown workload {part!r}; choose from {', '.join(WORKLOADS)}")
        chosen.add(_ALIASES[part])
    if not chosen:
        raise argparse.ArgumentTypeError("--only names no workload")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run, not a measurement")
    parser.add_argument(
        "--reps", type=int, default=5, help="interleaved repetitions per workload (default 5)"
    )
    parser.add_argument(
        "--only", type=parse_only, default=None, help=f"comma list of workloads: {', '.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--bootstrap-servers",
        help="use this broker; default: provision a LocalKafka(nodes=1) and stop it after",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="the 50%% load in msg/s; 25%% and 75%% scale from it (default: 50%% of W1 (b)'s median)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="RESULTS.md path (default bench/RESULTS.md, bench/RESULTS.quick.md with --quick)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reps < 1:
        print("python -m bench: --reps must be at least 1", file=sys.stderr)
        return 2
    selected = args.only if args.only is not None else set(WORKLOADS)
    output: Path = args.output or _HERE / ("RESULTS.quick.md" if args.quick else "RESULTS.md")
    scale = QUICK if args.quick else FULL
    command = "python -m bench" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    started = time.monotonic()
    kafka = None
    if args.bootstrap_servers:
        bootstrap, broker = args.bootstrap_servers, "external broker"
        kafka_version = detect_kafka_version(bootstrap)
    else:
        from stream_service.localkafka import LocalKafka
        from stream_service.localkafka.jars import default_version

        say("provisioning a local Kafka broker (LocalKafka, 1 node) ...")
        kafka = LocalKafka(nodes=1).start()
        bootstrap, broker = kafka.bootstrap_servers, "provisioned LocalKafka(nodes=1)"
        kafka_version = kafka.version or default_version()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    suite = Suite(
        command=command,
        started_at=_now(),
        quick=args.quick,
        reps=args.reps,
        bootstrap=bootstrap,
        broker=broker,
        params=params(scale),
        machine=describe_machine(kafka_version),
    )
    failed: BaseException | None = None
    try:
        asyncio.run(run_selected(Bench(bootstrap, log_dir), suite, selected, scale, args.latency_rate))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - report what ran, then the failure
        failed = exc
    finally:
        if kafka is not None:
            kafka.stop()
    suite.finished_at = _now()
    suite.wall_s = time.monotonic() - started
    if suite.machine is not None:
        suite.machine.load_avg_end = [round(x, 2) for x in os.getloadavg()]
    output.parent.mkdir(parents=True, exist_ok=True)
    kept = preserved_section(output)  # the scale-out block (python -m bench.scaleout) is not ours to drop
    explained = explanations.read(output)  # the lead's explanations of misses, kept across runs
    output.write_text(report.render(suite, explained) + ("\n" + kept if kept else ""))
    output.with_suffix(".json").write_bytes(encode(suite))
    say(f"wrote {output} and {output.with_suffix('.json')} after {suite.wall_s / 60:.1f} min")
    if failed is not None:
        say(f"FAILED: {type(failed).__name__}: {failed}\nchild logs kept in {log_dir}")
        return 1
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


if __name__ == "__main__":
    sys.exit(main())
