"""The pure core of ``stream-service reconcile``: which input offsets have outputs.

:class:`Tally` takes the input offsets in range and the lineage of each output, one at a time,
and gives the :class:`Verdict`: per partition, the missing offsets as compact ranges, the
duplicates, and outputs that name offsets the input topic does not hold. Memory is one byte per
offset in range (two when the input's offsets are read rather than assumed contiguous).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from stream_service.errors import ToolError

__all__ = ["MAX_RANGES_LISTED", "PartitionVerdict", "Tally", "Verdict", "reconcile"]

MAX_RANGES_LISTED = 1_000
# One byte of bookkeeping per offset in range: refuse ranges that would need gigabytes.
MAX_OFFSETS_PER_PARTITION = 500_000_000

_ZERO = bytes([1] + [0] * 255)  # translate table: 1 where a count is zero, else 0
_MANY = bytes([0, 0] + [1] * 254)  # 1 where a count is two or more
_NONZERO = bytes([0] + [1] * 255)


class PartitionVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """One input partition over ``[start, end)``; missing ranges are inclusive ``[first, last]``."""

    partition: int
    start: int
    end: int
    expected: int
    answered: int
    missing: int
    missing_ranges: list[tuple[int, int]]
    missing_ranges_truncated: bool = False
    duplicated_offsets: int = 0  # inputs answered more than once
    duplicate_outputs: int = 0  # outputs beyond the first per input
    unknown_offsets: int = 0  # outputs naming an offset the input topic does not have


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The reconciliation of one input topic: ``ok`` when no input offset lacks an output."""

    input_topic: str
    ok: bool
    expected: int
    answered: int
    missing: int
    duplicated_offsets: int
    duplicate_outputs: int
    outside_range: int  # outputs for this topic outside the partitions/offsets checked
    other_topics: int  # outputs answering another input topic
    unlabelled: int = 0  # outputs without lineage headers
    contiguous: bool = True  # True when offsets were assumed contiguous, not read
    exactly_once: bool = False  # True when duplicates count against ``ok`` (committed data checked)
    partitions: list[PartitionVerdict] = []


class _Partition:
    __slots__ = ("counts", "duplicates", "end", "present", "start")

    def __init__(self, start: int, end: int, contiguous: bool) -> None:
        if end - start > MAX_OFFSETS_PER_PARTITION:
            raise ToolError(
                f"{end - start} offsets in one partition is too many to reconcile at once: "
                "narrow the range with --from-offset/--to-offset"
            )
        self.start, self.end = start, end
        self.counts = bytearray(max(0, end - start))  # outputs per offset, saturating at 255
        self.present = None if contiguous else bytearray(max(0, end - start))
        self.duplicates = 0


class Tally:
    """Accumulates input offsets and output lineage, then gives the :class:`Verdict`.

    ``input_ranges`` maps partition -> ``(start, end)``, end exclusive. With
    ``contiguous=False`` only offsets passed to :meth:`expect` count as inputs. Memory is one
    byte per offset in range (two when not contiguous).
    """

    def __init__(
        self, input_topic: str, input_ranges: Mapping[int, tuple[int, int]], *, contiguous: bool = True
    ):
        self.input_topic = input_topic
        self.contiguous = contiguous
        self._parts = {p: _Partition(start, end, contiguous) for p, (start, end) in input_ranges.items()}
        self.outside_range = 0
        self.other_topics = 0
        self.unlabelled = 0

    def expect(self, partition: int, offset: int) -> None:
        """Record that the input topic holds ``offset`` (ignored when contiguous or out of range)."""
        part = self._parts.get(partition)
        if part is not None and part.present is not None and part.start <= offset < part.end:
            part.present[offset - part.start] = 1

    def expect_many(self, partition: int, offsets: Iterable[int]) -> None:
        for offset in offsets:
            self.expect(partition, offset)

    def seen(self, topic: str, partition: int, offset: int) -> None:
        """Record one output answering ``topic``/``partition``/``offset``."""
        if topic != self.input_topic:
            self.other_topics += 1
            return
        part = self._parts.get(partition)
        if part is None or not part.start <= offset < part.end:
            self.outside_range += 1
            return
        index = offset - part.start
        count = part.counts[index]
        if count:
            part.duplicates += 1
        if count < 255:
            part.counts[index] = count + 1

    def verdict(self) -> Verdict:
        partitions = [self._partition_verdict(p, part) for p, part in sorted(self._parts.items())]
        missing = sum(v.missing for v in partitions)
        return Verdict(
            input_topic=self.input_topic,
            ok=missing == 0,
            expected=sum(v.expected for v in partitions),
            answered=sum(v.answered for v in partitions),
            missing=missing,
            duplicated_offsets=sum(v.duplicated_offsets for v in partitions),
            duplicate_outputs=sum(v.duplicate_outputs for v in partitions),
            outside_range=self.outside_range,
            other_topics=self.other_topics,
            unlabelled=self.unlabelled,
            contiguous=self.contiguous,
            partitions=partitions,
        )

    @staticmethod
    def _partition_verdict(partition: int, part: _Partition) -> PartitionVerdict:
        size = len(part.counts)
        unanswered = bytes(part.counts.translate(_ZERO))
        unknown = 0
        if part.present is None:
            expected, missing_mask = size, unanswered
        else:
            expected = part.present.count(1)
            # Both masks hold only 0/1 bytes, so a big-integer AND is a byte-wise AND, at C speed.
            both = int.from_bytes(unanswered, "little") & int.from_bytes(part.present, "little")
            missing_mask = both.to_bytes(size, "little")
            answered_mask = int.from_bytes(part.counts.translate(_NONZERO), "little")
            not_present = int.from_bytes(part.present.translate(_ZERO), "little")
            unknown = (answered_mask & not_present).bit_count()
        missing = missing_mask.count(1)
        ranges, truncated = _ranges(missing_mask, part.present, part.start)
        return PartitionVerdict(
            partition=partition,
            start=part.start,
            end=part.end,
            expected=expected,
            answered=expected - missing,
            missing=missing,
            missing_ranges=ranges,
            missing_ranges_truncated=truncated,
            duplicated_offsets=part.counts.translate(_MANY).count(1),
            duplicate_outputs=part.duplicates,
            unknown_offsets=unknown,
        )


def _ranges(mask: bytes, present: bytearray | None, base: int) -> tuple[list[tuple[int, int]], bool]:
    """Runs of 1 in ``mask`` as inclusive offset ranges; runs separated only by offsets that do
    not exist in the input (``present`` is 0 there) are merged into one range."""
    ranges: list[tuple[int, int]] = []
    pos = mask.find(1)
    while pos != -1:
        stop = mask.find(0, pos)
        stop = len(mask) if stop == -1 else stop
        if ranges and present is not None and present.find(1, ranges[-1][1] - base + 1, pos) == -1:
            ranges[-1] = (ranges[-1][0], base + stop - 1)
        else:
            if len(ranges) == MAX_RANGES_LISTED:
                return ranges, True
            ranges.append((base + pos, base + stop - 1))
        pos = mask.find(1, stop)
    return ranges, False


def reconcile(
    input_ranges: Mapping[int, tuple[int, int]],
    seen: Iterable[tuple[str, int, int]],
    input_topic: str,
    *,
    input_offsets: Mapping[int, Iterable[int]] | None = None,
) -> Verdict:
    """Check that every input offset in ``input_ranges`` (partition -> [start, end)) appears in
    ``seen`` (source topic, partition, offset of each output). With ``input_offsets`` only those
    offsets count as inputs; otherwise every offset in range does."""
    tally = Tally(input_topic, input_ranges, contiguous=input_offsets is None)
    for partition, offsets in (input_offsets or {}).items():
        tally.expect_many(partition, offsets)
    for topic, partition, offset in seen:
        tally.seen(topic, partition, offset)
    return tally.verdict()
