"""Tiny inline-SVG chart primitives for the self-contained HTML report (no JS library, no network).

Every function returns one ``<svg>`` string of a fixed ``W x H`` viewBox with axes, ticks and ``<title>`` tooltips;
empty input gives the same frame with a "no data" label, so a plot always renders. Values are plotted as given
(the caller states units in the axis label).
"""

from __future__ import annotations

import html
import math
import time
from typing import Iterable, Sequence

W, H = 640, 260
_L, _R, _T, _B = 56, 16, 24, 36  # margins (the top one holds legends)
LEVEL_COLORS = {"EXCELLENT": "#1a9850", "GOOD": "#91cf60", "SLOW": "#fc8d59", "BOTTLENECK": "#d73027",
                "NONE": "#999999"}
PHASE_COLORS = {"queue": "#fdae61", "prefill": "#4575b4", "decode": "#74add1", "weights": "#4575b4",
                "compile": "#d73027", "kv_cache": "#fdae61", "warmup": "#91cf60", "other": "#bbbbbb"}


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.0f}"
    if a >= 0.001:
        return f"{v:.3g}"
    return f"{v:.1e}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


class _Frame:
    """Linear scales + axes for a plot area."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float):
        self.x0, self.x1 = x0, x1 if x1 > x0 else x0 + 1
        self.y0, self.y1 = y0, y1 if y1 > y0 else y0 + 1

    def x(self, v: float) -> float:
        return _L + (v - self.x0) / (self.x1 - self.x0) * (W - _L - _R)

    def y(self, v: float) -> float:
        return H - _B - (v - self.y0) / (self.y1 - self.y0) * (H - _T - _B)

    def axes(self, xlabel: str, ylabel: str, xtime: bool = False, yticks: bool = True) -> str:
        parts = [f'<line class="axis" x1="{_L}" y1="{H - _B}" x2="{W - _R}" y2="{H - _B}" stroke="#444"/>',
                 f'<line class="axis" x1="{_L}" y1="{_T}" x2="{_L}" y2="{H - _B}" stroke="#444"/>']
        for t in _ticks(self.y0, self.y1) if yticks else []:
            y = self.y(t)
            parts.append(f'<line x1="{_L - 4}" y1="{y:.1f}" x2="{W - _R}" y2="{y:.1f}" stroke="#eee"/>'
                         f'<text x="{_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>')
        clock = "%H:%M:%S" if self.x1 - self.x0 < 600 else "%H:%M" if self.x1 - self.x0 < 86400 else "%m-%d %H:%M"
        for t in _ticks(self.x0, self.x1, 6):
            x = self.x(t)
            label = time.strftime(clock, time.localtime(t)) if xtime else _fmt(t)
            if xtime and self.x1 - self.x0 < 10:  # sub-second ticks: tenths
                label += f".{int(round(t % 1 * 10)) % 10}"
            parts.append(f'<line x1="{x:.1f}" y1="{H - _B}" x2="{x:.1f}" y2="{H - _B + 4}" stroke="#444"/>'
                         f'<text x="{x:.1f}" y="{H - _B + 15}" text-anchor="middle" font-size="10">{label}</text>')
        parts.append(f'<text x="{(W + _L) / 2}" y="{H - 4}" text-anchor="middle" font-size="11">{_esc(xlabel)}</text>')
        parts.append(f'<text x="12" y="{(H - _B + _T) / 2}" text-anchor="middle" font-size="11" '
                     f'transform="rotate(-90 12 {(H - _B + _T) / 2})">{_esc(ylabel)}</text>')
        return "".join(parts)


def _svg(plot_id: str, body: str, empty: bool = False) -> str:
    note = (f'<text class="nodata" x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="14" fill="#888">'
            "no data in this range</text>") if empty else ""
    return (f'<svg id="{_esc(plot_id)}" class="plot" data-empty="{str(empty).lower()}" viewBox="0 0 {W} {H}" '
            f'width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>{body}{note}</svg>')


def histogram(plot_id: str, values: Iterable[float | None], xlabel: str, bins: int = 30) -> str:
    """Histogram of ``values`` (None skipped) in ``bins`` equal-width bins; y = request count."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return _svg(plot_id, _Frame(0, 1, 0, 1).axes(xlabel, "requests"), empty=True)
    lo, hi = vals[0], vals[-1] if vals[-1] > vals[0] else vals[0] + 1e-9
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in vals:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    f = _Frame(lo, hi, 0, max(counts) * 1.1)
    bars = []
    for i, c in enumerate(counts):
        if c:
            x0, x1 = f.x(lo + i * width), f.x(lo + (i + 1) * width)
            bars.append(f'<rect class="bar" x="{x0:.1f}" y="{f.y(c):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                        f'height="{f.y(0) - f.y(c):.1f}" fill="#4575b4"><title>{_fmt(lo + i * width)}–'
                        f'{_fmt(lo + (i + 1) * width)}: {c}</title></rect>')
    p50, p95 = vals[int(0.5 * (len(vals) - 1))], vals[int(0.95 * (len(vals) - 1))]
    marks = "".join(f'<line x1="{f.x(v):.1f}" y1="{_T}" x2="{f.x(v):.1f}" y2="{H - _B}" stroke="{c}" '
                    f'stroke-dasharray="4 3"><title>{n} {_fmt(v)}</title></line>'
                    f'<text x="{f.x(v) + 3:.1f}" y="{_T - 6}" font-size="10" fill="{c}">{n}</text>'
                    for n, v, c in (("p50", p50, "#1a9850"), ("p95", p95, "#d73027")))
    return _svg(plot_id, f.axes(xlabel, "requests") + "".join(bars) + marks)


def scatter_levels(plot_id: str, points: Sequence[tuple[float, float | None, str]], ylabel: str) -> str:
    """Points ``(unix_seconds, value, level)`` coloured by performance level, time on x."""
    pts = [(t, v, lvl) for t, v, lvl in points if v is not None]
    if not pts:
        return _svg(plot_id, _Frame(0, 1, 0, 1).axes("time", ylabel), empty=True)
    f = _Frame(min(p[0] for p in pts), max(p[0] for p in pts), 0, max(p[1] for p in pts) * 1.1)
    dots = "".join(f'<circle class="point" cx="{f.x(t):.1f}" cy="{f.y(v):.1f}" r="3" '
                   f'fill="{LEVEL_COLORS.get(lvl, "#999")}"><title>{_fmt(v)} ({_esc(lvl)})</title></circle>'
                   for t, v, lvl in pts)
    legend = "".join(f'<circle cx="{_L + 12 + i * 96}" cy="10" r="4" fill="{c}"/>'
                     f'<text x="{_L + 20 + i * 96}" y="14" font-size="10">{n}</text>'
                     for i, (n, c) in enumerate(LEVEL_COLORS.items()))
    return _svg(plot_id, f.axes("time", ylabel, xtime=True) + dots + legend)


def line(plot_id: str, series: Sequence[tuple[float, float]], ylabel: str, color: str = "#4575b4") -> str:
    """A line through ``(unix_seconds, value)`` points, time on x."""
    if not series:
        return _svg(plot_id, _Frame(0, 1, 0, 1).axes("time", ylabel), empty=True)
    f = _Frame(series[0][0], series[-1][0], 0, max(v for _, v in series) * 1.1 or 1)
    path = " ".join(f"{'M' if i == 0 else 'L'}{f.x(t):.1f},{f.y(v):.1f}" for i, (t, v) in enumerate(series))
    dots = "".join(f'<circle class="point" cx="{f.x(t):.1f}" cy="{f.y(v):.1f}" r="2" fill="{color}">'
                   f'<title>{_fmt(v)}</title></circle>' for t, v in series)
    return _svg(plot_id, f.axes("time", ylabel, xtime=True) +
                f'<path class="series" d="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>' + dots)


def waterfall(plot_id: str, rows: Sequence[tuple[str, Sequence[tuple[str, float | None]]]], xlabel: str) -> str:
    """Horizontal stacked bars: one row per ``(label, [(phase, seconds), ...])``; phases laid end to end."""
    rows = [(lbl, [(p, v) for p, v in phases if v]) for lbl, phases in rows]
    rows = [r for r in rows if r[1]]
    if not rows:
        return _svg(plot_id, _Frame(0, 1, 0, 1).axes(xlabel, "", yticks=False), empty=True)
    total = max(sum(v for _, v in phases) for _, phases in rows)
    f = _Frame(0, total * 1.4, 0, 1)  # room on the right for the labels
    band = (H - _T - _B) / len(rows)
    parts = [f.axes(xlabel, "", yticks=False)]
    for i, (label, phases) in enumerate(rows):
        y = _T + i * band + band * 0.15
        x = 0.0
        for phase, v in phases:
            parts.append(f'<rect class="bar" x="{f.x(x):.1f}" y="{y:.1f}" width="{max(f.x(x + v) - f.x(x), 1):.1f}" '
                         f'height="{band * 0.7:.1f}" fill="{PHASE_COLORS.get(phase, "#bbb")}">'
                         f'<title>{_esc(label)} {phase}: {_fmt(v)} s</title></rect>')
            x += v
        parts.append(f'<text x="{f.x(x) + 4:.1f}" y="{y + band * 0.5:.1f}" font-size="9">{_esc(label)}</text>')
    used = []
    for _, phases in rows:
        used += [p for p, _ in phases if p not in used]
    parts += [f'<rect x="{W - _R - 80}" y="{_T + i * 13}" width="9" height="9" fill="{PHASE_COLORS.get(p, "#bbb")}"/>'
              f'<text x="{W - _R - 68}" y="{_T + 8 + i * 13}" font-size="10">{p}</text>' for i, p in enumerate(used)]
    return _svg(plot_id, "".join(parts))


def timeline(plot_id: str, rows: Sequence[tuple[str, float, float, str]], t0: float, t1: float) -> str:
    """Intervals ``(label, start_s, end_s, severity)`` on a time axis ``[t0, t1]``, one lane per label."""
    if not rows:
        return _svg(plot_id, _Frame(t0, t1, 0, 1).axes("time", "", xtime=True, yticks=False), empty=True)
    labels = list(dict.fromkeys(r[0] for r in rows))
    f = _Frame(min(t0, min(r[1] for r in rows)), max(t1, max(r[2] for r in rows)), 0, 1)
    band = (H - _T - _B) / len(labels)
    colors = {"critical": "#d73027", "warning": "#fc8d59", "info": "#4575b4"}
    parts = [f.axes("time", "", xtime=True, yticks=False)]
    for label, start, end, severity in rows:
        y = _T + labels.index(label) * band + band * 0.2
        parts.append(f'<rect class="bar" x="{f.x(start):.1f}" y="{y:.1f}" '
                     f'width="{max(f.x(end) - f.x(start), 2):.1f}" height="{band * 0.6:.1f}" '
                     f'fill="{colors.get(severity, "#999")}"><title>{_esc(label)} ({_esc(severity)}) '
                     f'{time.strftime("%H:%M:%S", time.localtime(start))}–'
                     f'{time.strftime("%H:%M:%S", time.localtime(end))}</title></rect>')
    for i, label in enumerate(labels):
        parts.append(f'<text x="{_L + 4}" y="{_T + i * band + band * 0.2 - 2:.1f}" font-size="10">{_esc(label)}</text>')
    return _svg(plot_id, "".join(parts))
