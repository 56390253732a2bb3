"""The canonical audit lines: one function per event, so names and fields stay stable.

Operators and alerts key on these event names; renaming one is a breaking change:

==========================  =======  =====================================================
event                       level    when
==========================  =======  =====================================================
``service.started``         info     after startup, with the redacted configuration
``service.stopped``         info     after shutdown, with the reason and final counters
``partitions.assigned``     info     a rebalance gave this member partitions
``partitions.revoked``      info     a rebalance took partitions away
``partitions.paused``       warning  back-pressure paused fetching
``partitions.resumed``      info     fetching resumed
``batch.completed``         info     one line per batch: size, outcomes, latency
``request.failed``          warning  one line per failed request (an ErrorRecord was published)
``request.completed``       info     one line per request, only when ``audit_requests`` is on
``offsets.committed``       info     offsets committed to the group
``rebalance.drain_timeout`` warning  revoked partitions' work did not finish within the drain timeout
==========================  =======  =====================================================

Prompts and generated content never appear in clear: :func:`fingerprint` stands in for them
(length and a truncated SHA-256, enough to correlate identical prompts across lines).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from structlog.typing import FilteringBoundLogger

from stream_service import __version__

__all__ = [
    "batch_completed",
    "committed",
    "drain_timeout",
    "fingerprint",
    "partitions_assigned",
    "partitions_revoked",
    "paused",
    "request_completed",
    "request_failed",
    "resumed",
    "service_started",
    "service_stopped",
]

_FINGERPRINT_HEX_CHARS = 16
# Error messages come from processors we do not control; bound them so one cannot flood a line.
_MAX_ERROR_CHARS = 512
# A batch may span many tenants; the line lists the busiest ones and counts the rest.
_MAX_TENANTS_LISTED = 32

TopicPartitionLike = tuple[str, int] | str | int
"""A partition as a (topic, partition) pair or TopicPartition, a ``"topic[3]"`` string, or a bare number."""


def fingerprint(text: str) -> dict[str, Any]:
    """Length in characters and the first 16 hex chars of the SHA-256 of the UTF-8 text."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return {"len": len(text), "sha256": digest[:_FINGERPRINT_HEX_CHARS]}


def service_started(
    log: FilteringBoundLogger, config_redacted: Mapping[str, Any], *, event_loop: str = "asyncio"
) -> None:
    """Log ``service.started`` with the configuration (secrets already redacted by the caller)
    and the event loop it runs on."""
    log.info(
        "service.started",
        version=__version__,
        pid=os.getpid(),
        event_loop=event_loop,
        config=dict(config_redacted),
    )


def service_stopped(log: FilteringBoundLogger, reason: str, stats: Mapping[str, Any]) -> None:
    """Log ``service.stopped`` with why it stopped and the final counters."""
    log.info("service.stopped", reason=reason, stats=dict(stats))


def partitions_assigned(log: FilteringBoundLogger, partitions: Iterable[TopicPartitionLike]) -> None:
    """Log ``partitions.assigned`` (see :data:`TopicPartitionLike` for the accepted shapes)."""
    grouped = _group(partitions)
    log.info("partitions.assigned", partitions=grouped, count=_count(grouped))


def partitions_revoked(log: FilteringBoundLogger, partitions: Iterable[TopicPartitionLike]) -> None:
    """Log ``partitions.revoked``."""
    grouped = _group(partitions)
    log.info("partitions.revoked", partitions=grouped, count=_count(grouped))


def paused(log: FilteringBoundLogger, partitions: Iterable[TopicPartitionLike], reason: str) -> None:
    """Log ``partitions.paused`` with the back-pressure reason (e.g. ``in_flight_bytes``)."""
    grouped = _group(partitions)
    log.warning("partitions.paused", partitions=grouped, count=_count(grouped), reason=reason)


def resumed(log: FilteringBoundLogger, partitions: Iterable[TopicPartitionLike], reason: str) -> None:
    """Log ``partitions.resumed``."""
    grouped = _group(partitions)
    log.info("partitions.resumed", partitions=grouped, count=_count(grouped), reason=reason)


def batch_completed(
    log: FilteringBoundLogger,
    *,
    batch_id: int | str,
    size: int,
    partitions: Iterable[TopicPartitionLike],
    tenants: Mapping[str, int] | Collection[str],
    outcomes: Mapping[str, int],
    latency_s: float,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> None:
    """Log ``batch.completed``: one line per batch.

    ``tenants`` is either tenant -> request count (the busiest are listed) or a collection of
    tenant names; ``outcomes`` is outcome -> count (``success``, ``error``, ``cached``);
    ``trace_id``/``span_id`` (with tracing on) are the batch span's.
    """
    listed: dict[str, int] | list[str]
    if isinstance(tenants, Mapping):
        busiest = sorted(tenants.items(), key=lambda item: (-item[1], item[0]))
        listed = dict(busiest[:_MAX_TENANTS_LISTED])
        tenant_count = len(busiest)
    else:
        names = sorted(tenants)
        listed = names[:_MAX_TENANTS_LISTED]
        tenant_count = len(names)
    log.info(
        "batch.completed",
        batch_id=batch_id,
        size=size,
        partitions=_group(partitions),
        tenants=listed,
        tenant_count=tenant_count,
        outcomes=dict(outcomes),
        latency_s=round(latency_s, 6),
        **_trace(trace_id, span_id),
    )


def request_failed(
    log: FilteringBoundLogger,
    *,
    request_id: str | None,
    tenant: str | None,
    error_type: str,
    error: str,
    attempts: int,
    topic: str,
    partition: int,
    offset: int,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> None:
    """Log ``request.failed``: one line per request that became an ErrorRecord (with tracing on,
    with the ids of the request's span)."""
    log.warning(
        "request.failed",
        request_id=request_id,
        tenant=tenant,
        error_type=error_type,
        error=_truncate(error),
        attempts=attempts,
        topic=topic,
        partition=partition,
        offset=offset,
        **_trace(trace_id, span_id),
    )


def request_completed(
    log: FilteringBoundLogger,
    *,
    request_id: str,
    tenant: str,
    prompt: str,
    partition: int,
    offset: int,
    topic: str | None = None,
    profile_name: str | None = None,
    content: str | None = None,
    latency_s: float | None = None,
    attempts: int = 1,
    cached: bool = False,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> None:
    """Log ``request.completed`` with fingerprints of the prompt and content (never the text).

    Optional fields left as ``None`` are omitted from the line.
    """
    optional: dict[str, Any] = {
        "topic": topic,
        "profile_name": profile_name,
        "content": fingerprint(content) if content is not None else None,
        "latency_s": round(latency_s, 6) if latency_s is not None else None,
        "trace_id": trace_id,
        "span_id": span_id,
    }
    log.info(
        "request.completed",
        request_id=request_id,
        tenant=tenant,
        prompt=fingerprint(prompt),
        partition=partition,
        offset=offset,
        attempts=attempts,
        cached=cached,
        **{key: value for key, value in optional.items() if value is not None},
    )


def drain_timeout(log: FilteringBoundLogger, timeout_s: float, in_flight: int) -> None:
    """Log ``rebalance.drain_timeout``: revoked partitions still had work running at the deadline."""
    log.warning(
        "rebalance.drain_timeout",
        timeout_s=timeout_s,
        in_flight=in_flight,
        hint="unfinished work is redelivered; raise delivery.drain_timeout_s for fewer duplicates",
    )


def committed(log: FilteringBoundLogger, offsets: Mapping[tuple[str, int], int]) -> None:
    """Log ``offsets.committed``; offsets are the next offsets to read, per (topic, partition)."""
    by_topic: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        by_topic.setdefault(topic, {})[str(partition)] = offset
    log.info("offsets.committed", offsets=by_topic, count=len(offsets))


def _group(partitions: Iterable[TopicPartitionLike]) -> dict[str, list[int]] | list[int]:
    """Partitions in a compact, stable shape: ``{topic: [sorted numbers]}``, or a sorted list of
    numbers when only numbers were given. ``"topic[3]"`` strings are parsed; other strings are
    kept under their own name with no numbers."""
    grouped: dict[str, list[int]] = {}
    numbers: list[int] = []
    for item in partitions:
        if isinstance(item, int):
            numbers.append(item)
            continue
        if isinstance(item, str):
            topic, bracket, rest = item.rpartition("[")
            if bracket and rest.endswith("]") and rest[:-1].isdigit():
                grouped.setdefault(topic, []).append(int(rest[:-1]))
            else:
                grouped.setdefault(item, [])
            continue
        topic, partition = item
        grouped.setdefault(topic, []).append(partition)
    if not grouped:
        return sorted(numbers)
    if numbers:
        grouped.setdefault("", []).extend(numbers)
    return {topic: sorted(found) for topic, found in sorted(grouped.items())}


def _count(grouped: dict[str, list[int]] | list[int]) -> int:
    if isinstance(grouped, list):
        return len(grouped)
    return sum(len(numbers) for numbers in grouped.values())


def _trace(trace_id: str | None, span_id: str | None) -> dict[str, str]:
    """The span's ids for a line, when there is one (tracing on)."""
    if trace_id is None or span_id is None:
        return {}
    return {"trace_id": trace_id, "span_id": span_id}


def _truncate(text: str) -> str:
    if len(text) <= _MAX_ERROR_CHARS:
        return text
    return text[:_MAX_ERROR_CHARS] + f"... ({len(text)} chars)"
