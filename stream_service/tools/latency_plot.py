"""``report --plot latency.png``: the processing-time histogram as a picture.

Bars count results per bin on a logarithmic time axis (latencies span decades), ticks at each
power of ten, and the p50, p95 and p99 marked as vertical lines. Drawn from the report's
:class:`~stream_service.tools.latency.LatencySketch` (so within its error bound past a million
results) with :mod:`stream_service.tools.png`: no plotting library.
"""

from __future__ import annotations

import math
from pathlib import Path

from stream_service.tools.latency import LatencySketch
from stream_service.tools.png import Canvas, Color, encode_png

__all__ = ["format_seconds", "histogram", "render_plot", "write_plot"]

WIDTH, HEIGHT = 800, 400
BINS = 60
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 50, 40
_INK: Color = (30, 30, 30)
_GRID: Color = (225, 225, 225)
BAR: Color = (70, 130, 180)
_MARKS: tuple[tuple[float, str, Color], ...] = (
    (0.5, "p50", (20, 20, 20)),
    (0.95, "p95", (230, 140, 20)),
    (0.99, "p99", (200, 40, 40)),
)


def format_seconds(seconds: float) -> str:
    """``0.0183`` -> ``18.3ms``; microseconds as ``us``, whole seconds as ``s``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            value = seconds / scale
            return f"{value:.3g}{unit}"
    return f"{seconds:g}s"


def histogram(sketch: LatencySketch, bins: int = BINS) -> tuple[float, float, list[int]]:
    """Counts per bin between log10 of the smallest and largest positive time; zeros go in bin 0."""
    positive = [(value, count) for value, count in sketch.buckets() if value > 0]
    if not positive:
        return -3.0, 0.0, [sketch.count] + [0] * (bins - 1)
    low, high = math.log10(positive[0][0]), math.log10(positive[-1][0])
    if high - low < 0.1:  # one value, or nearly: give the bars some room
        low, high = low - 0.05, high + 0.05
    counts = [0] * bins
    for value, count in sketch.buckets():
        position = 0 if value <= 0 else int((math.log10(value) - low) / (high - low) * bins)
        counts[min(max(position, 0), bins - 1)] += count
    return low, high, counts


def render_plot(sketch: LatencySketch, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """The histogram of ``sketch`` as a PNG of ``width`` x ``height`` pixels."""
    canvas = Canvas(width, height)
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    if not sketch.count:
        canvas.text(_LEFT, _TOP, "no successful results: nothing to plot", _INK)
        return encode_png(canvas)
    low, high, counts = histogram(sketch)
    tallest = max(counts)

    def x_of(log_value: float) -> int:
        return _LEFT + round((log_value - low) / (high - low) * plot_w)

    for decade in range(math.ceil(low), math.floor(high) + 1):
        x = x_of(decade)
        canvas.rect(x, _TOP, 1, plot_h, _GRID)
        label = format_seconds(10.0**decade)
        left = min(x - Canvas.text_width(label) // 2, width - Canvas.text_width(label) - 2)
        canvas.text(left, _TOP + plot_h + 8, label, _INK)
    bar_w = plot_w / len(counts)
    for i, count in enumerate(counts):
        if count:
            bar_h = max(1, round(count / tallest * plot_h))
            left = _LEFT + round(i * bar_w)
            canvas.rect(
                left, _TOP + plot_h - bar_h, max(1, round((i + 1) * bar_w) - (left - _LEFT) - 1), bar_h, BAR
            )
    canvas.rect(_LEFT, _TOP, 1, plot_h, _INK)
    canvas.rect(_LEFT, _TOP + plot_h, plot_w, 1, _INK)
    canvas.text(8, _TOP, f"{tallest:,}", _INK)
    canvas.text(8, _TOP + plot_h - 10, "0", _INK)
    legend = []
    for q, name, color in _MARKS:
        value = sketch.quantile(q)
        if value is None or value <= 0:
            continue
        x = x_of(min(max(math.log10(value), low), high))
        canvas.rect(x - 1, _TOP, 3, plot_h, color)
        legend.append((f"{name} {format_seconds(value)}", color))
    canvas.text(_LEFT, 12, f"processing time of {sketch.count:,} results (log scale)", _INK)
    x = _LEFT
    for text, color in legend:
        canvas.rect(x, 32, 10, 10, color)
        canvas.text(x + 14, 32, text, _INK)
        x += Canvas.text_width(text) + 40
    return encode_png(canvas)


def write_plot(sketch: LatencySketch, path: Path) -> None:
    """Write the histogram PNG to ``path``; raises OSError when it cannot be written."""
    path.write_bytes(render_plot(sketch))
