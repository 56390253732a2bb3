"""What a benchmark invocation measured: one :class:`Run` per measured run, plus its context.

``bench/RESULTS.json`` holds a :class:`Suite` as written by ``python -m bench``; RESULTS.md is
rendered from it (:mod:`bench.report`), so a table can be re-rendered without re-measuring.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bench.stats import Summary, summarize

# Workload keys, in the order they run and are reported.
W1 = "W1"
W2 = "W2"
W3 = "W3"
LATENCY = "latency"
MEMORY = "memory"
OVERHEADS = "overheads"  # runs as extra W1 variants, sharing W1's input topic per repetition
WORKLOADS = (W1, OVERHEADS, W2, W3, LATENCY, MEMORY)

# Variant names; RAW and SERVICE are W1's (a) and (b).
RAW = "raw"
SERVICE = "service"
AUDIT = "service+audit"
NO_METRICS = "service-metrics"
CACHE = "service+cache"
TRACING = "service+tracing"
ASYNC = "async"
PROCESS = "process"


class Run(msgspec.Struct, kw_only=True):
    """One measured run: which workload and variant, which repetition, and what it measured.

    ``values`` keys used by the report: ``msg_s`` (records / seconds from partitions assigned to
    all offsets committed), ``msg_s_acked`` (same, to the last result acknowledged), ``elapsed_s``,
    ``cpu_s``, ``peak_rss_mb``, ``p50_ms``, ``p99_ms``, ``processing_p99_ms``, ``offered_rate``,
    ``achieved_rate``, ``backlog``, ``processed``.
    """

    workload: str
    variant: str
    rep: int
    values: dict[str, float] = {}


class Machine(msgspec.Struct, kw_only=True):
    """Where it ran: hardware, OS and the versions of everything measured."""

    cpu_model: str
    nproc: int
    ram_gb: float
    kernel: str
    python: str
    kafka: str
    aiokafka: str
    msgspec: str
    stream_service: str
    load_avg_start: list[float] = []
    load_avg_end: list[float] = []


class Suite(msgspec.Struct, kw_only=True):
    """A whole invocation: its command, settings, machine and every run, in execution order."""

    command: str
    started_at: str
    finished_at: str = ""
    wall_s: float = 0.0
    quick: bool = False
    reps: int = 3
    bootstrap: str = ""
    broker: str = ""  # "provisioned LocalKafka" or "external"
    params: dict[str, Any] = {}
    machine: Machine | None = None
    runs: list[Run] = []

    def variants(self, workload: str) -> list[str]:
        """The variants of ``workload`` in the order they first ran."""
        seen: dict[str, None] = {}
        for run in self.runs:
            if run.workload == workload:
                seen.setdefault(run.variant)
        return list(seen)

    def values(self, workload: str, variant: str, key: str) -> list[float]:
        """``key`` of every repetition of ``workload``/``variant``, in repetition order."""
        runs = sorted((r for r in self.runs if r.workload == workload and r.variant == variant), key=_rep)
        return [r.values[key] for r in runs if key in r.values]

    def summary(self, workload: str, variant: str, key: str) -> Summary | None:
        """Median/min/max of ``key`` over the repetitions, or None when nothing measured it."""
        values = self.values(workload, variant, key)
        return summarize(values) if values else None

    def median(self, workload: str, variant: str, key: str) -> float | None:
        summary = self.summary(workload, variant, key)
        return summary.median if summary is not None else None


def _rep(run: Run) -> int:
    return run.rep


def encode(suite: Suite) -> bytes:
    return msgspec.json.format(msgspec.json.encode(suite), indent=1)


def decode(data: bytes) -> Suite:
    return msgspec.json.decode(data, type=Suite)
