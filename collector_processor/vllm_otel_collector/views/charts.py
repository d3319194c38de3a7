"""The HTML report's charts as Plotly figures (``plotly.graph_objects``), one builder per chart.

Every builder takes plain rows (dicts as read by :mod:`.data`; times in unix seconds, latencies in seconds) and
returns a ``go.Figure`` whose axes, legend and margins are laid out by Plotly (``automargin``: tick labels and titles
are never cut). An empty input gives a figure with a "no data" note instead of traces, so every chart renders.
Time axes show local time. Heatmap bins: latency buckets at round bounds, log-spaced (:data:`MANTISSAS` per decade:
1, 1.5, 2, 3, 4, 6, 8 × 10^k s, bucket ``[lo, hi)``) × a time step chosen so that a window has at most ~60 columns;
each heatmap row is labelled by its bounds (``"0.04–0.06 s"``), every row up to :data:`MAX_Y_TICKS` rows, else every
n-th row evenly.
"""

from __future__ import annotations

import bisect
import math
import time
from datetime import datetime
from typing import Any, Iterable, Sequence

import plotly.graph_objects as go

LEVEL_COLORS = {"EXCELLENT": "#1a9850", "GOOD": "#91cf60", "SLOW": "#fc8d59", "BOTTLENECK": "#d73027",
                "NONE": "#999999"}
PHASE_COLORS = {"queue": "#fdae61", "prefill": "#4575b4", "decode": "#74add1", "weights": "#4575b4",
                "compile": "#d73027", "kv_cache": "#fdae61", "warmup": "#91cf60", "other": "#bbbbbb"}
SEVERITY_COLORS = {"critical": "#d73027", "warning": "#fc8d59"}
CAUSE_COLORS = {"ok": "#bbbbbb", "queued": "#fdae61", "prefill": "#4575b4", "decode": "#74add1",
                "preempted": "#d73027", "aborted": "#984ea3", "error": "#000000"}
HEIGHT = 340
#: Heatmap latency bucket bounds per decade: m × 10^k seconds for each mantissa m (round numbers, roughly log-even).
MANTISSAS = (1, 1.5, 2, 3, 4, 6, 8)
BUCKETS_PER_DECADE = len(MANTISSAS)
#: At most this many labelled rows on a heatmap's latency axis (more rows: every n-th row, evenly).
MAX_Y_TICKS = 12
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


def _t(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s)


def _base(fig: go.Figure, xtitle: str, ytitle: str, empty: bool = False) -> go.Figure:
    """Shared layout: white template, legend above the plot area (never over the data), auto margins."""
    fig.update_layout(template="plotly_white", height=HEIGHT, margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0, traceorder="normal"),
                      hovermode="closest", font=dict(size=12))
    fig.update_xaxes(title_text=xtitle, automargin=True)
    fig.update_yaxes(title_text=ytitle, automargin=True)
    if empty:
        fig.add_annotation(text="no data in this window", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                           font=dict(size=14, color="#888"))
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    return fig


def quantile(values: Iterable[float | None], q: float) -> float | None:
    """Linear-interpolated quantile ``q`` in [0, 1] of the non-None ``values`` (numpy's default); None if empty."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    pos = (len(vals) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def histogram(values: Iterable[float | None], xtitle: str, name: str) -> go.Figure:
    """Distribution of one latency (seconds), 30 bins, with dashed p50/p95 lines."""
    vals = [v for v in values if v is not None]
    fig = go.Figure()
    if vals:
        fig.add_trace(go.Histogram(x=vals, nbinsx=30, name=name, marker_color="#4575b4", showlegend=False,
                                   hovertemplate="%{x} s: %{y} requests<extra></extra>"))
        for q, dash in ((0.5, "dash"), (0.95, "dot")):
            v = quantile(vals, q)
            fig.add_vline(x=v, line=dict(color="#d73027", dash=dash, width=1.5))
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"p{round(q * 100)} {v:.3f} s",
                                     line=dict(color="#d73027", dash=dash)))
    return _base(fig, xtitle, "requests", empty=not vals)


def time_step(span_s: float, max_columns: int = 60) -> int:
    """Heatmap/throughput column width (seconds): the smallest of 1 s … 1 d giving at most ``max_columns``."""
    return next((s for s in _STEPS if span_s / s <= max_columns), _STEPS[-1])


def latency_edges(lo: float, hi: float) -> list[float]:
    """Bucket bounds (seconds, :data:`MANTISSAS` per decade) from the largest bound ``<= lo`` to the smallest bound
    ``> hi``; ``lo``, ``hi`` positive. Bounds are the decimal numbers themselves (``float("4e-2")``), not products."""
    e0, e1 = math.floor(math.log10(lo)) - 1, math.floor(math.log10(hi)) + 1
    edges = [float(f"{m}e{e}") for e in range(e0, e1 + 1) for m in MANTISSAS]
    first = bisect.bisect_right(edges, lo) - 1
    last = bisect.bisect_right(edges, hi)
    return edges[first:last + 1]


def bucket_label(lo: float, hi: float) -> str:
    """A heatmap row's label: its bounds in seconds, ``"0.04–0.06 s"`` (the bucket holds ``lo <= v < hi``)."""
    return f"{lo:g}–{hi:g} s"


def heatmap_bins(points: Sequence[tuple[float, float | None]]) -> tuple[list[float], list[float], list[list[int]]]:
    """Bin ``(unix_s, latency_s)`` points: returns ``(time_edges, latency_edges, counts[latency_bucket][column])``.

    Latency edges are :func:`latency_edges` covering the data, bucket ``i`` holds ``edges[i] <= v < edges[i + 1]``
    (non-positive latencies go to the lowest bucket); time edges step by :func:`time_step`. Empty input gives empty
    lists.
    """
    pts = [(t, v) for t, v in points if v is not None and math.isfinite(v)]
    if not pts:
        return [], [], []
    positive = [v for _, v in pts if v > 0] or [1e-3]
    edges = latency_edges(min(positive), max(positive))
    t_lo, t_hi = min(t for t, _ in pts), max(t for t, _ in pts)
    step = time_step(t_hi - t_lo)
    first = math.floor(t_lo / step) * step
    n_cols = int((t_hi - first) // step) + 1
    counts = [[0] * n_cols for _ in range(len(edges) - 1)]
    for t, v in pts:
        k = 0 if v <= 0 else min(max(bisect.bisect_right(edges, v) - 1, 0), len(edges) - 2)
        counts[k][int((t - first) // step)] += 1
    return [first + i * step for i in range(n_cols + 1)], edges, counts


def y_ticks(n_rows: int, max_ticks: int = MAX_Y_TICKS) -> list[int]:
    """Rows that get a tick label: all of them up to ``max_ticks``, else every ``ceil(n / max_ticks)``-th from 0."""
    every = max(1, math.ceil(n_rows / max_ticks))
    return list(range(0, n_rows, every))


def heatmap(points: Sequence[tuple[float, float | None]], ytitle: str) -> go.Figure:
    """Latency distribution over time: request counts per (time column, latency bucket). Row ``i`` spans
    ``[i, i + 1]`` on a linear y axis (equal heights for log-spaced buckets); its tick at ``i + 0.5`` is labelled
    with the bucket's bounds (:func:`bucket_label`), thinned by :func:`y_ticks`; hover names the bucket."""
    t_edges, y_edges, counts = heatmap_bins(points)
    fig = go.Figure()
    if counts:
        labels = [bucket_label(lo, hi) for lo, hi in zip(y_edges, y_edges[1:])]
        fig.add_trace(go.Heatmap(
            x=[_t(t) for t in t_edges], y=list(range(len(y_edges))), z=[[c or None for c in row] for row in counts],
            customdata=[[label] * len(row) for label, row in zip(labels, counts)],
            colorscale="Viridis", colorbar=dict(title=dict(text="requests", side="right"), thickness=12),
            hovertemplate="%{x}<br>%{customdata}<br>%{z} requests<extra></extra>", name=ytitle))
        shown = y_ticks(len(labels))
        fig.update_yaxes(type="linear", range=[0, len(labels)], tickmode="array",
                         tickvals=[i + 0.5 for i in shown], ticktext=[labels[i] for i in shown], showgrid=False,
                         zeroline=False)
    return _base(fig, "time", ytitle, empty=not counts)


def cause_bars(columns: Sequence[tuple[float, dict[str, int]]], step: int) -> go.Figure:
    """Requests per cause over time: one stacked bar per ``step``-second column ``(unix_s, {cause: count})``, a trace
    per cause in :data:`CAUSE_COLORS` order; "ok" starts hidden (legend click shows it) so the slow ones stay
    readable. No traces when no column has a request."""
    fig = go.Figure()
    if any(sum(c.values()) for _, c in columns):
        xs = [_t(t + step / 2) for t, _ in columns]
        for cause, color in CAUSE_COLORS.items():
            fig.add_trace(go.Bar(x=xs, y=[c.get(cause, 0) for _, c in columns], name=cause, marker_color=color,
                                 width=step * 1000 * 0.9, visible="legendonly" if cause == "ok" else True,
                                 hovertemplate="%{x}<br>%{y} " + cause + "<extra></extra>"))
        fig.update_layout(barmode="stack", showlegend=True)
    return _base(fig, "time", "requests", empty=not fig.data)


def goodput_lines(series: dict[str, Sequence[tuple[float, float, float]]]) -> go.Figure:
    """Per model, throughput (solid) and goodput (dashed) in requests/s over time, from ``{model: [(unix_s,
    throughput, goodput)]}``; one colour per model."""
    palette = ("#4575b4", "#d73027", "#1a9850", "#984ea3", "#ff7f00", "#a65628")
    fig = go.Figure()
    for i, (model, points) in enumerate(series.items()):
        color = palette[i % len(palette)]
        xs = [_t(t) for t, _, _ in points]
        for name, k, dash in (("throughput", 1, "solid"), ("goodput", 2, "dash")):
            fig.add_trace(go.Scatter(x=xs, y=[p[k] for p in points], mode="lines+markers", name=f"{model} {name}",
                                     line=dict(color=color, dash=dash), marker=dict(size=4),
                                     hovertemplate="%{x}<br>%{y:.3f} req/s<extra>" + f"{model} {name}</extra>"))
    fig.update_layout(showlegend=True)
    return _base(fig, "time", "requests/s", empty=not fig.data)


def latency_levels(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """E2E latency per request over time, one trace (legend entry) per performance level; hover shows the trace id."""
    fig = go.Figure()
    for lvl, color in LEVEL_COLORS.items():
        mine = [r for r in rows if (r["E2ELevel"] or "NONE") == lvl and r["E2E"] is not None]
        if mine:
            fig.add_trace(go.Scatter(
                x=[_t(r["Timestamp"]) for r in mine], y=[r["E2E"] for r in mine], mode="markers", name=lvl,
                marker=dict(color=color, size=6), customdata=[r["TraceId"] for r in mine],
                hovertemplate="%{x}<br>e2e %{y:.3f} s<br>trace %{customdata}<extra>" + lvl + "</extra>"))
    fig.update_layout(showlegend=True)  # also for a single level: the legend says what the colour means
    return _base(fig, "time", "e2e latency (s)", empty=not fig.data)


def line(points: Sequence[tuple[float, float]], ytitle: str, name: str) -> go.Figure:
    """One series over time (``(unix_s, value)``)."""
    fig = go.Figure()
    if points:
        fig.add_trace(go.Scatter(x=[_t(t) for t, _ in points], y=[v for _, v in points], mode="lines+markers",
                                 name=name, line=dict(color="#4575b4"), marker=dict(size=4), showlegend=False,
                                 hovertemplate="%{x}<br>%{y:.1f} " + name + "<extra></extra>"))
    return _base(fig, "time", ytitle, empty=not points)


def phase_bars(rows: Sequence[tuple[str, str, Sequence[tuple[str, float | None]]]], xtitle: str) -> go.Figure:
    """Horizontal stacked bars, one per ``(label, hover_id, [(phase, seconds), ...])`` row, top row first."""
    fig = go.Figure()
    phases: list[str] = []
    for _, _, parts in rows:
        phases += [p for p, _ in parts if p not in phases]
    labels = [label for label, _, _ in rows]
    for phase in phases:
        values = [dict(parts).get(phase) for _, _, parts in rows]
        fig.add_trace(go.Bar(
            y=labels, x=values, name=phase, orientation="h", marker_color=PHASE_COLORS.get(phase, "#bbbbbb"),
            customdata=[hover for _, hover, _ in rows],
            hovertemplate="%{customdata}<br>" + phase + " %{x:.3f} s<extra></extra>"))
    fig.update_layout(barmode="stack", height=max(HEIGHT, 60 + 24 * len(rows)))
    fig.update_yaxes(autorange="reversed", type="category")
    return _base(fig, xtitle, "", empty=not rows)


def cold_vs_warm(pairs: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]) -> go.Figure:
    """Per model, its newest cold start (compile cache miss) next to its newest warm one (hit), phases stacked."""
    fig = go.Figure()
    xs: list[list[str]] = [[], []]
    values: dict[str, list[float | None]] = {p: [] for p in ("weights", "compile", "kv_cache", "warmup", "other")}
    hover = []
    for model, cold, warm in pairs:
        for kind, ld in (("cold (cache miss)", cold), ("warm (cache hit)", warm)):
            xs[0].append(model)
            xs[1].append(kind)
            for phase, v in load_phases(ld):
                values[phase].append(v)
            for phase in values:
                if len(values[phase]) < len(xs[0]):
                    values[phase].append(None)
            hover.append(f"{kind}: load {ld['LoadSeconds']:.1f} s, trace {ld['TraceId']}")
    for phase, vals in values.items():
        if any(v for v in vals):
            fig.add_trace(go.Bar(x=xs, y=vals, name=phase, marker_color=PHASE_COLORS[phase], customdata=hover,
                                 hovertemplate="%{customdata}<br>" + phase + " %{y:.2f} s<extra></extra>"))
    for model, cold, warm in pairs:
        if warm["LoadSeconds"]:
            fig.add_annotation(x=[model, "warm (cache hit)"], y=warm["LoadSeconds"], yanchor="bottom",
                               text=f"{cold['LoadSeconds'] / warm['LoadSeconds']:.1f}× faster", showarrow=False)
    fig.update_layout(barmode="stack")
    return _base(fig, "", "seconds", empty=not pairs)


def load_phases(ld: dict[str, Any]) -> list[tuple[str, float | None]]:
    """A model load's phases in seconds: weights, compile, KV cache, warm-up, and "other" (the rest of the load).

    On CPU vLLM compiles inside its warm-up (``compile_or_warm_up_model``), so the stored warm-up includes the
    compile: when the phases add up to more than the load and the warm-up is at least the compile, the warm-up shown
    is the part beyond the compile (stacking both would count the compile twice)."""
    warm, comp = ld["WarmupSeconds"], ld["CompileSeconds"]
    parts = [ld["WeightsSeconds"], comp, ld["KVCacheSeconds"], warm]
    if warm is not None and comp is not None and warm >= comp and sum(v or 0 for v in parts) > (ld["LoadSeconds"] or 0):
        warm = warm - comp
    known = [("weights", ld["WeightsSeconds"]), ("compile", comp), ("kv_cache", ld["KVCacheSeconds"]),
             ("warmup", warm)]
    other = (ld["LoadSeconds"] or 0) - sum(v or 0 for _, v in known)
    return known + ([("other", other)] if other > 0.01 else [])


def timeline(rows: Sequence[tuple[str, float, float, str]], t0: float, t1: float) -> go.Figure:
    """Alert firing intervals ``(rule, start, end, severity)`` as horizontal bars on a time axis ``[t0, t1]``."""
    fig = go.Figure()
    for sev in sorted({r[3] for r in rows}):
        mine = [r for r in rows if r[3] == sev]
        fig.add_trace(go.Bar(
            y=[r[0] for r in mine], base=[_t(r[1]) for r in mine], x=[(r[2] - r[1]) * 1000 for r in mine],
            orientation="h", name=sev, marker_color=SEVERITY_COLORS.get(sev, "#999999"),
            customdata=[[time.strftime("%H:%M:%S", time.localtime(r[1])),
                         time.strftime("%H:%M:%S", time.localtime(r[2]))] for r in mine],
            hovertemplate="%{y}: firing %{customdata[0]} – %{customdata[1]}<extra>" + sev + "</extra>"))
    fig.update_xaxes(type="date", range=[_t(t0), _t(t1)])
    fig.update_yaxes(type="category")
    return _base(fig, "time", "", empty=not rows)
