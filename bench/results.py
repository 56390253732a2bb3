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
STARTUP = "startup"  # time to first result
MEMORY = "memory"
OVERHEADS = "overheads"  # runs as extra W1 variants, sharing W1's input topic per repetition
EOS = "eos"  # exactly once: W1 (e) and latency at 50% beside their at-least-once runs
WORKLOADS = (W1, OVERHEADS, EOS, W2, W3, LATENCY, STARTUP, MEMORY)

# Variant names. W1: (a) RAW, (a') RAW_ACKS1, (b) SERVICE, (e) SERVICE_EOS.
RAW = "raw"
RAW_ACKS1 = "raw-acks1"
SERVICE = "service"
SERVICE_EOS = "service-eos"
AUDIT = "service+audit"
NO_METRICS = "service-metrics"
CACHE = "service+cache"
TRACING = "service+tracing"
ASYNC = "async"
PROCESS = "process"
# Memory: the service with nothing to read (its baseline RSS).
IDLE = "idle"


def w2_variant(kind: str, concurrency: int) -> str:
    """W2's variant name: ``raw C=64``, ``service C=256``."""
    return f"{kind} C={concurrency}"


def latency_variant(kind: str, load_percent: int, *, of_own: bool = False) -> str:
    """The latency variant name: ``service 50%``, ``service-eos 50%`` (percent of W1 (b)'s rate), or
    ``service-eos 50% of (e)`` (percent of the exactly-once W1 (e) rate)."""
    return f"{kind} {load_percent}%" + (" of (e)" if of_own else "")


def backlog_variant(backlog: int, bound: int) -> str:
    """The memory variant name: ``backlog 200,000, bound 1,000`` (``executor.max_in_flight``)."""
    return f"backlog {backlog:,}, bound {bound:,}"


class Run(msgspec.Struct, kw_only=True):
    """One measured run: which workload and variant, which repetition, and what it measured.

    ``values`` keys used by the report: ``msg_s`` (records / seconds from partitions assigned to
    all offsets committed), ``msg_s_acked`` (same, to the last result acknowledged), ``elapsed_s``,
    ``cpu_s`` (whole process), ``cpu_us_per_record`` (CPU from partitions assigned to done, per
    record), ``peak_rss_mb``; latency: ``p50_ms``, ``p95_ms``, ``p99_ms`` (log-append time),
    ``visible_p50_ms``, ``visible_p95_ms``, ``visible_p99_ms`` (seen by a read_committed reader),
    ``processing_p99_ms``, ``offered_rate``, ``achieved_rate``; startup: ``first_result_s``,
    ``assigned_s``; memory: ``backlog``, ``in_flight_bound``, ``processed``, ``steady_rss_mb``,
    ``in_flight``.
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
    reps: int = 5
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
