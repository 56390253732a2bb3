"""What ``stream-service replay`` re-produces, and why not the rest: pure planning, no I/O.

:class:`Failures` collects error records (of the wanted types) by the input they answer;
:class:`InputIndex` collects what the input topic holds of those inputs, and every replay it
already holds; :func:`plan_replays` decides, input by input, to replay it (with which headers)
or to skip it, with a reason.

**Replay chain.** A replayed record carries ``replay-of`` (the request's original record) and
``replay-count``. Replaying a record that is itself a replay keeps its ``replay-of`` and adds
one to its count, so the count is of the request, not of the last copy, and ``--max-replays``
bounds the request however often the tool runs. Replays go to the partition of the record they
copy, after it, so the input scan from the first failed offset to the end sees every replay of
every request it plans: an input whose request already has a replay with a higher count is not
replayed again (``already-replayed``). Running the same command twice is therefore safe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final, Literal, NamedTuple

import msgspec

from stream_service.tools.lineage import Lineage
from stream_service.wire import REPLAY_COUNT, REPLAY_OF

__all__ = [
    "DEFAULT_ERROR_TYPES",
    "NEEDS_ATTENTION",
    "REFUSED_ERROR_TYPES",
    "Failure",
    "Failures",
    "InputIndex",
    "InputRecord",
    "Origin",
    "Plan",
    "Replay",
    "Skip",
    "SkipReason",
    "Skips",
    "plan_replays",
    "replay_headers",
    "replay_marker",
]

DEFAULT_ERROR_TYPES: Final = ("timeout", "rate_limit", "connection", "crash")
"""The retriable error types: the same request may well succeed another time."""
REFUSED_ERROR_TYPES: Final[dict[str, str]] = {
    "validation": "the record itself is invalid, and a replay is the same record",
    "profile": "it names a profile the processor does not know (add the profile first)",
    "too_large": "its result is over kafka.producer_max_request_size (raise the limit first)",
}
"""Error types a replay of the unchanged record cannot fix: replayed only with ``--force``."""

SkipReason = Literal[
    "duplicate", "already-replayed", "max-replays", "expired", "not-found", "other-topic", "no-lineage"
]
NEEDS_ATTENTION: Final[frozenset[SkipReason]] = frozenset(
    {"max-replays", "expired", "not-found", "no-lineage"}
)
"""Skips that leave a failed request without a replay (the others are replayed, or were already)."""

Headers = Sequence[tuple[str, bytes | None]]
EXAMPLES_PER_REASON = 10


class Origin(NamedTuple):
    """One input record: the value of a ``replay-of`` header."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class ReplayMarker(NamedTuple):
    """The replay headers of a record: which request it replays, and how many times so far."""

    origin: Origin
    replay_count: int


def replay_marker(headers: Headers) -> ReplayMarker | None:
    """The replay headers of a record; None for an original (or malformed headers: then it is
    treated as an original, and replaying it starts a chain of its own)."""
    of = count = None
    for name, value in headers:
        if name == REPLAY_OF:
            of = value
        elif name == REPLAY_COUNT:
            count = value
    if of is None or count is None:
        return None
    try:
        topic, partition, offset = of.decode().rsplit("/", 2)
        origin, n = Origin(topic, int(partition), int(offset)), int(count)
    except (ValueError, UnicodeDecodeError):
        return None
    return ReplayMarker(origin, n) if n >= 1 and topic else None


def replay_headers(headers: Headers, origin: Origin, count: int) -> list[tuple[str, bytes | None]]:
    """``headers`` unchanged but for the replay headers, which name ``origin`` and ``count``."""
    kept = [(name, value) for name, value in headers if name not in (REPLAY_OF, REPLAY_COUNT)]
    return [*kept, (REPLAY_OF, str(origin).encode()), (REPLAY_COUNT, str(count).encode())]


class Skip(msgspec.Struct, frozen=True, kw_only=True):
    """An error record, or the input it names, that is not replayed: why, and which one."""

    reason: SkipReason
    partition: int | None
    offset: int | None
    request_id: str | None
    detail: str


class Failure(msgspec.Struct, kw_only=True):
    """An input named by at least one wanted error record."""

    partition: int
    offset: int
    error_type: str
    request_id: str | None


class Skips:
    """Skips counted per reason, with the first few of each kept as examples (bounded memory)."""

    def __init__(self, examples: int = EXAMPLES_PER_REASON) -> None:
        self.counts: Counter[SkipReason] = Counter()
        self.examples: list[Skip] = []
        self._limit = examples

    def add(self, skip: Skip) -> None:
        self.counts[skip.reason] += 1
        if self.counts[skip.reason] <= self._limit:
            self.examples.append(skip)

    def needing_attention(self) -> int:
        """Failed requests these skips leave without a replay."""
        return sum(n for reason, n in self.counts.items() if reason in NEEDS_ATTENTION)


class Failures:
    """Error records of the wanted types, one :class:`Failure` per input they answer."""

    def __init__(self, input_topic: str, error_types: Iterable[str]) -> None:
        self.input_topic = input_topic
        self.error_types = frozenset(error_types)
        self.inputs: dict[tuple[int, int], Failure] = {}
        self.read = 0  # error records in the window
        self.unreadable = 0  # undecodable error records: their type is unknown
        self.by_type: Counter[str] = Counter()  # wanted error records, per type
        self.skips = Skips()

    def add(self, error_type: str | None, lineage: Lineage | None, request_id: str | None) -> None:
        """One error record: its type (None: undecodable) and lineage (None: it has none)."""
        self.read += 1
        if error_type is None:
            self.unreadable += 1
            return
        if error_type not in self.error_types:
            return
        self.by_type[error_type] += 1
        if lineage is None:
            self.skips.add(
                Skip(reason="no-lineage", partition=None, offset=None, request_id=request_id,
                     detail="the error record has no lineage headers")
            )  # fmt: skip
            return
        partition, offset = lineage.partition, lineage.offset
        if lineage.topic != self.input_topic:
            self.skips.add(
                Skip(reason="other-topic", partition=partition, offset=offset, request_id=request_id,
                     detail=f"answers topic {lineage.topic}")
            )  # fmt: skip
            return
        if (partition, offset) in self.inputs:
            self.skips.add(
                Skip(reason="duplicate", partition=partition, offset=offset, request_id=request_id,
                     detail="another error record answers the same input")
            )  # fmt: skip
            return
        self.inputs[(partition, offset)] = Failure(
            partition=partition, offset=offset, error_type=error_type, request_id=request_id
        )

    def offsets(self) -> dict[int, set[int]]:
        """The failed input offsets, per partition."""
        wanted: dict[int, set[int]] = {}
        for partition, offset in self.inputs:
            wanted.setdefault(partition, set()).add(offset)
        return wanted


class InputRecord(NamedTuple):
    """An input record as fetched: what a replay copies."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


class InputIndex:
    """What the input scan found: the failed inputs, and the highest replay count per request.

    ``log_start`` is each partition's first offset when the scan began: a failed input below it
    was deleted by retention.
    """

    def __init__(self, wanted: dict[int, set[int]], log_start: dict[int, int]) -> None:
        self.wanted = wanted
        self.log_start = log_start
        self.records: dict[tuple[int, int], InputRecord] = {}
        self.latest: dict[Origin, int] = {}
        self.scanned = 0

    def add(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, headers: Headers
    ) -> None:
        self.scanned += 1
        if headers:
            marker = replay_marker(headers)
            if marker is not None and marker.replay_count > self.latest.get(marker.origin, 0):
                self.latest[marker.origin] = marker.replay_count
        offsets = self.wanted.get(partition)
        if offsets is not None and offset in offsets:
            self.records[(partition, offset)] = InputRecord(partition, offset, key, value, list(headers))


class Replay(NamedTuple):
    """One record to re-produce: to ``partition`` of the input topic, with ``headers``."""

    partition: int
    offset: int  # of the record it copies
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    origin: Origin
    replay_count: int
    error_type: str
    request_id: str | None


class Plan(NamedTuple):
    """The replays in input order (partition, offset), and the skips."""

    replays: list[Replay]
    skips: Skips


def plan_replays(failures: Failures, found: InputIndex, *, max_replays: int) -> Plan:
    """For each failed input, in order: replay it, or skip it with a reason.

    Skips, in the order checked: ``expired`` (below the partition's log start), ``not-found``
    (compacted away, or a partition the topic does not have), ``already-replayed`` (the request
    has a replay with a higher count than this record), ``duplicate`` (another failed record of
    the same request, with the same count, is replayed), ``max-replays`` (the count would exceed
    ``max_replays``). They are added to ``failures.skips``, which already holds the error
    records skipped while collecting (``duplicate``, ``other-topic``, ``no-lineage``).
    """
    replays: list[Replay] = []
    skips = failures.skips
    chosen: dict[tuple[Origin, int], Replay] = {}
    for key in sorted(failures.inputs):
        failure = failures.inputs[key]
        decision = _decide(failure, failures.input_topic, found, chosen, max_replays)
        if isinstance(decision, Replay):
            chosen[(decision.origin, decision.replay_count - 1)] = decision
            replays.append(decision)
        else:
            reason, detail = decision
            skips.add(
                Skip(reason=reason, partition=failure.partition, offset=failure.offset,
                     request_id=failure.request_id, detail=detail)
            )  # fmt: skip
    return Plan(replays=replays, skips=skips)


def _decide(
    failure: Failure,
    input_topic: str,
    found: InputIndex,
    chosen: dict[tuple[Origin, int], Replay],
    max_replays: int,
) -> Replay | tuple[SkipReason, str]:
    partition, offset = failure.partition, failure.offset
    record = found.records.get((partition, offset))
    if record is None:
        start = found.log_start.get(partition)
        if start is not None and offset < start:
            return "expired", f"below the partition's log start {start} (retention)"
        return "not-found", "the input topic does not hold this offset"
    marker = replay_marker(record.headers)
    origin, count = marker if marker is not None else (Origin(input_topic, partition, offset), 0)
    latest = found.latest.get(origin, 0)
    if latest > count:
        return "already-replayed", f"{origin} has a replay with replay-count {latest}"
    twin = chosen.get((origin, count))
    if twin is not None:
        return "duplicate", f"the same request is replayed from offset {twin.offset}"
    if count + 1 > max_replays:
        times = "once" if count == 1 else f"{count} times"
        return "max-replays", f"{origin} was replayed {times} already (--max-replays {max_replays})"
    return Replay(
        partition=partition,
        offset=offset,
        key=record.key,
        value=record.value,
        headers=replay_headers(record.headers, origin, count + 1),
        origin=origin,
        replay_count=count + 1,
        error_type=failure.error_type,
        request_id=failure.request_id,
    )
