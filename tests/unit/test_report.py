"""Tests for stream_service.tools.report: analyse() figures, recommendations, rendering, the CLI on a file."""

from __future__ import annotations

import argparse
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from stream_service.errors import ToolError
from stream_service.messages import ErrorRecord, Result
from stream_service.tools import report
from stream_service.tools.latency_plot import BAR, format_seconds, render_plot
from stream_service.tools.report import ReportBuilder, analyse, percentile, render_text
from stream_service.tools.report_stats import TopCounts
from stream_service.tools.scan import parse_time


def _result(pt: float, profile: str, hrv: list[float] | None = None, cached: bool = False) -> Result:
    return Result(
        id=f"r{pt}",
        content="ok",
        hrv_vector=hrv,
        processing_time=pt,
        tenant="t",
        profile_name=profile,
        cached=cached,
    )


def _error(error_type: str, message: str) -> ErrorRecord:
    return ErrorRecord(id="e", error=message, error_type=error_type)  # type: ignore[arg-type]


KNOWN: list[Result | ErrorRecord] = [
    _result(0.1, "alpha", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]),
    _result(0.2, "alpha", [0.2] * 8, cached=True),
    _result(0.3, "beta"),
    _result(0.4, "beta", [1.0] * 8),
    _error("timeout", "took too long"),
    _error("timeout", "took too long"),
    _error("validation", "$.prompt: Expected `str`"),
]


def test_analyse_overview_and_performance_match_hand_computed_figures() -> None:
    """Counts, success rate and processing-time statistics match values computed by hand."""
    r = analyse(KNOWN, wall_seconds=2.0)
    assert (r.overview.total, r.overview.successful, r.overview.failed) == (7, 4, 3)
    assert r.overview.success_rate == pytest.approx(4 / 7)
    p = r.performance
    assert p.count == 4
    assert p.total_s == pytest.approx(1.0)
    assert p.mean_s == pytest.approx(0.25)
    assert p.median_s == pytest.approx(0.25)
    assert p.p95_s == pytest.approx(0.385)  # rank 0.95 * 3 = 2.85 -> 0.3 + 0.85 * 0.1
    assert p.p99_s == pytest.approx(0.397)
    assert (p.min_s, p.max_s) == (0.1, 0.4)
    assert p.throughput_per_s == pytest.approx(2.0)  # 4 successes over 2 s


def test_analyse_hrv_per_profile() -> None:
    """Each profile gets the mean of every dimension and the mean of all eight over its vectors."""
    alpha, beta = analyse(KNOWN).hrv
    assert (alpha.profile, alpha.count, alpha.with_hrv) == ("alpha", 2, 2)
    assert list(alpha.dimensions.values()) == pytest.approx([0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45])
    assert alpha.mean_overall == pytest.approx(0.275)
    assert list(alpha.dimensions)[0] == "valence"
    assert (beta.profile, beta.count, beta.with_hrv) == ("beta", 2, 1)
    assert beta.mean_overall == pytest.approx(1.0)


def test_analyse_errors_and_cache() -> None:
    """Errors are counted by type (most common first) with the top messages; cache rate is over successes."""
    r = analyse(KNOWN)
    assert r.errors.by_type == {"timeout": 2, "validation": 1}
    assert [(m.message, m.count) for m in r.errors.top_messages] == [
        ("took too long", 2),
        ("$.prompt: Expected `str`", 1),
    ]
    assert (r.cache.hits, r.cache.hit_rate) == (1, 0.25)


def test_recommendations_follow_the_figures() -> None:
    """Low success rate, low throughput, a dominant error type and back-pressure each give advice."""
    recs = analyse(KNOWN, wall_seconds=2.0, backpressure_seconds=5.0).recommendations
    assert len(recs) == 4
    assert "57.1%" in recs[0]
    assert "2.0 results/s" in recs[1]
    assert recs[2].startswith("timeout errors are 67%") and "request_timeout_s" in recs[2]
    assert "back-pressure" in recs[3]


def test_slow_tail_is_flagged_only_with_enough_samples() -> None:
    """A p95 over three times the mean is flagged once there are at least 20 results."""
    times = [0.01] * 18 + [1.0, 1.0]
    tail = analyse([_result(t, "p") for t in times]).recommendations
    assert any("slow tail" in r for r in tail)
    few = analyse([_result(t, "p") for t in [0.01, 0.01, 1.0]]).recommendations
    assert not any("slow tail" in r for r in few)


def test_healthy_run_has_no_recommendations() -> None:
    """All successes at a good rate, no back-pressure: nothing to recommend."""
    r = analyse([_result(0.05, "p") for _ in range(100)], wall_seconds=1.0, backpressure_seconds=0.0)
    assert r.recommendations == []
    assert r.overview.success_rate == 1.0


def test_empty_input_gives_empty_figures() -> None:
    """No records: zero counts and absent statistics, and rendering still works."""
    r = analyse([])
    assert r.overview.total == 0 and r.overview.success_rate is None
    assert r.performance.mean_s is None and r.performance.throughput_per_s is None
    assert "(no successful results)" in render_text(r)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([5.0], 0.95, 5.0, id="single value"),
        pytest.param([1.0, 2.0], 0.5, 1.5, id="midpoint"),
        pytest.param([1.0, 2.0, 3.0, 4.0, 5.0], 1.0, 5.0, id="maximum"),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], q: float, expected: float) -> None:
    """percentile() interpolates between closest ranks."""
    assert percentile(values, q) == pytest.approx(expected)


def test_render_text_aligns_columns() -> None:
    """The text report has every section and right-aligned numbers in its tables."""
    text = render_text(analyse(KNOWN, wall_seconds=2.0))
    for section in ["OVERVIEW", "PERFORMANCE", "HRV BY PROFILE", "ERRORS", "RECOMMENDATIONS"]:
        assert section in text
    rows = [line for line in text.splitlines() if line.startswith("  alpha") or line.startswith("  beta")]
    assert len(rows) == 2 and len(rows[0]) == len(rows[1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers())
    return parser


def test_cli_reads_a_jsonl_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """report --file --json prints the analysis of a JSONL file, counting undecodable lines."""
    path = tmp_path / "out.jsonl"
    lines = [msgspec.json.encode(r) for r in KNOWN] + [b"not json", b""]
    path.write_bytes(b"\n".join(lines) + b"\n")
    args = _parser().parse_args(["report", "--file", str(path), "--wall-seconds", "2", "--json"])
    assert args.handler(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["overview"] == {
        "total": 7,
        "successful": 4,
        "failed": 3,
        "success_rate": pytest.approx(4 / 7),
    }
    assert data["performance"]["throughput_per_s"] == pytest.approx(2.0)
    assert data["skipped_records"] == 1


def test_cli_text_output_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the report is text; an unreadable file exits 2 with a message."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"\n".join(msgspec.json.encode(r) for r in KNOWN))
    args = _parser().parse_args(["report", "--file", str(path)])
    assert args.handler(args) == 0
    assert "OVERVIEW" in capsys.readouterr().out
    args = _parser().parse_args(["report", "--file", str(tmp_path / "missing.jsonl")])
    assert args.handler(args) == 2
    assert "report:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        pytest.param("2024-05-01T12:00:00Z", 1714564800000, id="ISO with Z"),
        pytest.param("2024-05-01T12:00:00", 1714564800000, id="naive ISO is UTC"),
        pytest.param("2024-05-01T14:00:00+02:00", 1714564800000, id="ISO with offset"),
        pytest.param("15m", (1_000_000 - 900) * 1000, id="minutes ago"),
        pytest.param("2h", (1_000_000 - 7200) * 1000, id="hours ago"),
    ],
)
def test_parse_time_bounds(text: str, expected_ms: int) -> None:
    """--since/--until accept ISO 8601 (UTC when naive) or a duration ago."""
    assert parse_time(text, now_s=lambda: 1_000_000.0) == expected_ms


def test_parse_time_rejects_garbage() -> None:
    """An unreadable time bound is a ToolError that shows the accepted forms."""
    with pytest.raises(ToolError, match="ISO 8601"):
        parse_time("yesterday")


# ------------------------------------------------------------------------------------ streaming


def test_builder_keeps_no_record(tmp_path: Path) -> None:
    """20,000 results with 10 KB of content each are summarised in well under their 200 MB."""
    import tracemalloc

    def results() -> Iterator[Result]:
        for i in range(20_000):
            yield _result(0.001 * (i % 100 + 1), "p", [0.5] * 8, cached=i % 7 == 0)

    content = "x" * 10_000
    builder = ReportBuilder(exact_limit=0)
    tracemalloc.start()
    try:
        for record in results():
            builder.add(msgspec.structs.replace(record, content=content + str(record.processing_time)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"peak {peak} bytes: records are being kept"
    report_ = builder.report()
    assert report_.overview.successful == 20_000 and not report_.performance.percentiles_exact
    assert "percentiles within 0.5%" in render_text(report_)


def test_builder_gives_the_figures_of_analyse() -> None:
    """Adding outputs one at a time gives exactly what analyse() gives for the list."""
    builder = ReportBuilder()
    for record in KNOWN:
        builder.add(record)
    assert builder.report(wall_seconds=2.0) == analyse(KNOWN, wall_seconds=2.0)


def test_top_counts_are_exact_until_full_then_lower_bounds() -> None:
    """Under capacity counts are exact; past it a frequent message survives with a bounded undercount."""
    top = TopCounts(capacity=3)
    for key in ["a", "b", "a", "c", "a"]:
        top.add(key)
    assert top.most_common(2) == [("a", 3), ("b", 1)] and top.undercount == 0
    for i in range(50):
        top.add("hot")
        top.add(f"rare-{i}")
    (hot, count), *_ = top.most_common(1)
    assert hot == "hot" and 50 - top.undercount <= count <= 50


def test_many_distinct_messages_are_marked_as_lower_bounds() -> None:
    """When messages overflow the summary, the JSON says so and the text heading says 'at least'."""
    records = [_error("validation", f"bad field $.x{i}") for i in range(1_500)]
    report_ = analyse(records)
    assert not report_.errors.messages_exact
    assert "most common messages (at least):" in render_text(report_)
    assert "messages_exact" not in msgspec.json.encode(analyse(KNOWN)).decode()  # unchanged output


# ------------------------------------------------------------------------------------------ plot


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG file, each CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_cli_plot_writes_a_valid_png(tmp_path: Path) -> None:
    """report --plot writes an 800x400 RGB PNG whose chunks and pixel data are well formed."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"\n".join(msgspec.json.encode(_result(0.001 * (i + 1), "p")) for i in range(500)))
    plot = tmp_path / "latency.png"
    args = _parser().parse_args(["report", "--file", str(path), "--plot", str(plot)])
    assert args.handler(args) == 0
    chunks = _png_chunks(plot.read_bytes())
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (width, height, depth, color_type) == (800, 400, 8, 2)
    pixels = zlib.decompress(chunks[1][1])
    assert len(pixels) == height * (1 + width * 3)
    assert bytes(BAR) in pixels  # the bars are drawn


def test_plot_of_no_results_is_still_a_picture() -> None:
    """With no successful results the plot says so instead of failing."""
    data = render_plot(ReportBuilder().latency, width=200, height=100)
    assert struct.unpack(">II", _png_chunks(data)[0][1][:8]) == (200, 100)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0.0183, "18.3ms", id="milliseconds"),
        pytest.param(2.5, "2.5s", id="seconds"),
        pytest.param(4e-5, "40us", id="microseconds"),
    ],
)
def test_plot_labels_read_like_durations(seconds: float, text: str) -> None:
    """Axis and legend labels are short durations with a unit."""
    assert format_seconds(seconds) == text
