"""The report as text: aligned tables, one section per part of the :class:`Report`."""

from __future__ import annotations

from collections.abc import Sequence

from stream_service.processors.hrv import DIMENSION_NAMES
from stream_service.tools.latency import DEFAULT_RELATIVE_ERROR
from stream_service.tools.report_model import Report

__all__ = ["render_text"]


def _fmt(value: float | None, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _table(rows: Sequence[Sequence[str]], align: str = "", indent: str = "  ") -> list[str]:
    """Rows as aligned columns; ``align`` has one ``l``/``r`` per column (default: ``l`` then ``r``)."""
    if not rows:
        return []
    columns = len(rows[0])
    align = align or "l" + "r" * (columns - 1)
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def render_text(report: Report) -> str:
    """The report as a plain-text document of aligned tables."""
    o, p, c, e = report.overview, report.performance, report.cache, report.errors
    lines = ["OVERVIEW"]
    lines += _table(
        [
            ("total", str(o.total)),
            ("successful", str(o.successful)),
            ("failed", str(o.failed)),
            ("success rate", _pct(o.success_rate)),
            ("cache hits", f"{c.hits} ({_pct(c.hit_rate)} of successes)"),
        ],
        align="ll",
    )
    if report.skipped_records:
        lines.append(f"  ({report.skipped_records} undecodable records skipped)")
    heading = "PERFORMANCE (processing time of successful results)"
    if not p.percentiles_exact:
        heading += f"; percentiles within {DEFAULT_RELATIVE_ERROR:.1%}"
    lines += ["", heading]
    lines += _table(
        [
            ("results", str(p.count)),
            ("total", _fmt(p.total_s, " s", 3)),
            ("mean", _fmt(p.mean_s, " s")),
            ("median", _fmt(p.median_s, " s")),
            ("p95", _fmt(p.p95_s, " s")),
            ("p99", _fmt(p.p99_s, " s")),
            ("min", _fmt(p.min_s, " s")),
            ("max", _fmt(p.max_s, " s")),
            ("wall time", _fmt(p.wall_seconds, " s", 3)),
            ("throughput", _fmt(p.throughput_per_s, " results/s", 1)),
        ],
        align="ll",
    )
    lines += ["", "HRV BY PROFILE (means)"]
    if report.hrv:
        header = ("profile", "results", "with hrv", "overall", *DIMENSION_NAMES)
        rows = [
            (
                s.profile,
                str(s.count),
                str(s.with_hrv),
                _fmt(s.mean_overall, digits=3),
                *(_fmt(s.dimensions.get(name), digits=3) for name in DIMENSION_NAMES),
            )
            for s in report.hrv
        ]
        lines += _table([header, *rows])
    else:
        lines.append("  (no successful results)")
    lines += ["", "ERRORS"]
    if report.errors.by_type:
        lines += _table([("type", "count"), *((t, str(n)) for t, n in report.errors.by_type.items())])
        lines += ["", "  most common messages:" if e.messages_exact else "  most common messages (at least):"]
        lines += _table([(str(m.count), m.message) for m in report.errors.top_messages], "rl", indent="    ")
    else:
        lines.append("  (none)")
    if report.backpressure_seconds is not None:
        lines += ["", f"BACK-PRESSURE  {report.backpressure_seconds:.1f} s paused"]
    lines += ["", "RECOMMENDATIONS"]
    lines += [f"  - {r}" for r in report.recommendations] or ["  (none: nothing stands out)"]
    return "\n".join(lines) + "\n"
