"""Tests for stream_service.tools.reconcile's pure core: missing ranges, duplicates, offset gaps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_service.tools.lineage import Lineage, parse_lineage
from stream_service.tools.reconcile import MAX_RANGES_LISTED, reconcile, render_text

T = "requests"


def test_everything_answered_is_ok() -> None:
    """Every offset of every partition has an output: ok, nothing missing."""
    seen = [(T, p, o) for p in (0, 1) for o in range(10)]
    v = reconcile({0: (0, 10), 1: (0, 10)}, seen, T)
    assert v.ok and v.missing == 0 and v.expected == v.answered == 20
    assert [p.missing_ranges for p in v.partitions] == [[], []]


def test_missing_offsets_are_listed_as_compact_ranges() -> None:
    """Unanswered offsets appear as inclusive ranges, single offsets as (n, n)."""
    answered = set(range(100, 120)) - {103, 110, 111, 112, 119}
    v = reconcile({3: (100, 120)}, [(T, 3, o) for o in answered], T)
    assert not v.ok
    assert v.missing == 5
    (p,) = v.partitions
    assert p.missing_ranges == [(103, 103), (110, 112), (119, 119)]
    assert (p.expected, p.answered) == (20, 15)


def test_duplicates_are_counted_but_allowed() -> None:
    """An input answered three times counts as one duplicated offset and two extra outputs; still ok."""
    seen = [(T, 0, 0), (T, 0, 1), (T, 0, 1), (T, 0, 1), (T, 0, 2)]
    v = reconcile({0: (0, 3)}, seen, T)
    assert v.ok
    assert (v.duplicated_offsets, v.duplicate_outputs) == (1, 2)


def test_outputs_outside_the_check_are_counted_separately() -> None:
    """Outputs for other topics, other partitions or offsets out of range do not count as answers."""
    seen = [("other", 0, 0), (T, 9, 0), (T, 0, 50), (T, 0, 0)]
    v = reconcile({0: (0, 2)}, seen, T)
    assert (v.other_topics, v.outside_range, v.missing) == (1, 2, 1)


def test_offset_gaps_are_not_reported_missing_and_merge_ranges() -> None:
    """With the real input offsets, gaps (markers) are not inputs and do not split missing ranges."""
    inputs = [0, 1, 2, 4, 5, 7]  # 3 and 6 are transaction markers
    v = reconcile({0: (0, 8)}, [(T, 0, o) for o in (0, 1, 2)], T, input_offsets={0: inputs})
    (p,) = v.partitions
    assert (p.expected, p.answered, p.missing) == (6, 3, 3)
    assert p.missing_ranges == [(4, 7)]
    assert not v.contiguous


def test_outputs_naming_absent_offsets_are_flagged() -> None:
    """An output naming an offset the input topic does not hold is counted as unknown."""
    v = reconcile({0: (0, 3)}, [(T, 0, 0), (T, 0, 1), (T, 0, 2)], T, input_offsets={0: [0, 2]})
    assert v.ok
    assert v.partitions[0].unknown_offsets == 1


def test_empty_partition_range() -> None:
    """A partition with nothing in range expects nothing and is ok."""
    v = reconcile({0: (5, 5)}, [], T)
    assert v.ok and v.expected == 0
    assert "(empty)" in render_text(v)


def test_listed_ranges_are_capped() -> None:
    """Past MAX_RANGES_LISTED ranges the list is truncated and says so; the count stays exact."""
    n = 2 * (MAX_RANGES_LISTED + 10)
    v = reconcile({0: (0, n)}, [(T, 0, o) for o in range(0, n, 2)], T)
    (p,) = v.partitions
    assert p.missing == n // 2
    assert len(p.missing_ranges) == MAX_RANGES_LISTED and p.missing_ranges_truncated


def test_render_text_names_missing_offsets() -> None:
    """The text verdict lists the missing ranges and ends with a MISSING status line."""
    v = reconcile({0: (0, 10)}, [(T, 0, o) for o in range(10) if o not in (4, 5)], T)
    text = render_text(v)
    assert "missing in partition 0: 4-5" in text
    assert text.splitlines()[-1] == "MISSING: 8/10 inputs answered, 2 missing"


@given(
    inputs=st.sets(st.integers(0, 199)),
    answered=st.lists(st.integers(0, 199)),
)
def test_missing_matches_a_naive_set_difference(inputs: set[int], answered: list[int]) -> None:
    """For any inputs and outputs, missing offsets are exactly the inputs without an output."""
    v = reconcile({0: (0, 200)}, [(T, 0, o) for o in answered], T, input_offsets={0: inputs})
    expected_missing = inputs - set(answered)
    (p,) = v.partitions
    assert p.missing == len(expected_missing)
    covered = {o for first, last in p.missing_ranges for o in range(first, last + 1)}
    assert covered & inputs == expected_missing
    assert v.ok == (not expected_missing)
    assert p.duplicated_offsets == sum(1 for o in set(answered) if answered.count(o) > 1)


def test_parse_lineage_reads_the_source_headers() -> None:
    """Lineage comes from the source-* headers; records lacking them have none."""
    headers = [
        ("source-topic", b"requests"),
        ("source-partition", b"3"),
        ("source-offset", b"1234"),
        ("content-type", b"application/msgpack"),
        ("request-id", b"r-1"),
    ]
    assert parse_lineage(headers) == Lineage("requests", 3, 1234, "r-1", None, "application/msgpack")
    assert parse_lineage(headers[1:]) is None
    assert (
        parse_lineage([("source-topic", b"t"), ("source-partition", b"x"), ("source-offset", b"1")]) is None
    )
