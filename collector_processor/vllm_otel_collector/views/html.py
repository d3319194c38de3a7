"""``vllm-otel report``: one self-contained HTML page (inline CSS, SVG and a few lines of JS; nothing fetched).

Plots (ids are stable, the browser test looks them up): ``ttft-hist`` and ``tpot-hist`` (distributions),
``latency-time`` (e2e latency over time coloured by performance level), ``tokens-time`` (output tokens/s per minute),
``phase-waterfall`` (queue → prefill → decode of the slowest requests), ``load-waterfall`` (model-load phases per
engine start), ``alerts-timeline`` (firing intervals). Units: seconds; tokens per second.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
import time
from pathlib import Path

from vllm_otel_collector.views import svg
from vllm_otel_collector.views.data import ReportData, alert_intervals, collect

#: Default window when no ``since`` is given: the last 24 hours.
DEFAULT_WINDOW_S = 24 * 3600
SLOWEST_N = 12

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:0 0 6px}.sub{color:#666;font-size:13px;margin-bottom:16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(660px,1fr));gap:16px}
figure{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;margin:0}
figcaption{font-size:12px;color:#555;margin-top:4px}
table{border-collapse:collapse;font-size:13px;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}.kpis{margin-bottom:16px}
"""

# Inline, no dependencies: marks the page ready once every plot has a laid-out SVG (the browser test waits on it).
_JS = """
(function(){var plots=document.querySelectorAll('svg.plot');var ok=0;
plots.forEach(function(p){var r=p.getBoundingClientRect();if(r.width>0&&r.height>0){ok++;}});
document.body.setAttribute('data-plots',String(plots.length));document.body.setAttribute('data-ready',ok===plots.length?'1':'0');})();
"""


def _q(values: list[float], q: float) -> float | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    pos = (len(vals) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def _kpis(d: ReportData) -> str:
    reqs = d.requests

    def col(name):
        return [r[name] for r in reqs if r[name] is not None]

    span = max(d.until - d.since, 1.0)
    if reqs:
        span = max(max(r["Timestamp"] for r in reqs) - min(r["Timestamp"] for r in reqs), 1.0)
    out_tokens = sum(r["OutputTokens"] for r in reqs)

    def f(v, unit="s"):
        return "–" if v is None else f"{v:.3f} {unit}".strip()

    cells = [("requests", str(len(reqs))),
             ("errors / aborts / timeouts", " / ".join(str(sum(1 for r in reqs if r["Status"] == s))
                                                      for s in ("error", "abort", "timeout"))),
             ("TTFT p50 / p95", f"{f(_q(col('TTFT'), .5))} / {f(_q(col('TTFT'), .95))}"),
             ("TPOT p50 / p95", f"{f(_q(col('TPOT'), .5))} / {f(_q(col('TPOT'), .95))}"),
             ("e2e p50 / p95", f"{f(_q(col('E2E'), .5))} / {f(_q(col('E2E'), .95))}"),
             ("output tokens/s (overall)", f"{out_tokens / span:.1f}" if reqs else "–")]
    head = "".join(f"<th>{html.escape(k)}</th>" for k, _ in cells)
    body = "".join(f"<td>{html.escape(v)}</td>" for _, v in cells)
    return f'<table class="kpis" id="kpis"><tr>{head}</tr><tr>{body}</tr></table>'


def _throughput(d: ReportData) -> tuple[list[tuple[float, float]], str]:
    """Output tokens/s over time: the 1m rollup for long windows, else finer buckets from the request rows
    (tokens counted at the request's start). Returns ``(points, caption)``."""
    reqs = d.requests
    span = reqs[-1]["Timestamp"] - reqs[0]["Timestamp"] if reqs else 0.0
    if not reqs or span >= 1800 or d.truncated:
        return d.throughput, "Generated tokens per second, per minute (1m rollup)."
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60) if span / s <= 60), 60)
    first = math.floor(reqs[0]["Timestamp"] / step) * step
    sums = [0.0] * (int((reqs[-1]["Timestamp"] - first) // step) + 1)
    for r in reqs:
        sums[int((r["Timestamp"] - first) // step)] += r["OutputTokens"]
    return ([(first + i * step, v / step) for i, v in enumerate(sums)],
            f"Generated tokens per second in {step} s buckets (tokens counted at the request's start).")


def _first_seen(d: ReportData) -> float:
    """Left edge of time axes: the first request, load or alert in the window (not an empty 24 h)."""
    times = [r["Timestamp"] for r in d.requests[:1]] + [ld["Timestamp"] for ld in d.loads[:1]]
    times += [a["Timestamp"] for a in d.alerts if a["Timestamp"] >= d.since][:1]
    return min(times) if times else d.since


def _figure(title: str, plot: str, caption: str) -> str:
    return f"<figure><h2>{html.escape(title)}</h2>{plot}<figcaption>{html.escape(caption)}</figcaption></figure>"


def render_html(d: ReportData) -> str:
    """The page for ``d`` as one string (UTF-8, no external references)."""
    reqs = d.requests
    slowest = sorted((r for r in reqs if r["E2E"] is not None), key=lambda r: r["E2E"], reverse=True)[:SLOWEST_N]
    phase_rows = [(f"…{r['TraceId'][-8:]} {r['E2E']:.2f}s",
                   [("queue", r["Queue"]), ("prefill", r["Prefill"]), ("decode", r["Decode"])]) for r in slowest]
    throughput, throughput_caption = _throughput(d)
    load_rows = []
    for ld in d.loads:
        known = [("weights", ld["WeightsSeconds"]), ("compile", ld["CompileSeconds"]),
                 ("kv_cache", ld["KVCacheSeconds"]), ("warmup", ld["WarmupSeconds"])]
        other = (ld["LoadSeconds"] or 0) - sum(v or 0 for _, v in known)
        hit = {1: " (compile cache hit)", 0: " (cold compile)"}.get(ld["CompileCacheHit"], "")
        label = f"{time.strftime('%m-%d %H:%M', time.localtime(ld['Timestamp']))} {ld['Model']}{hit}"
        load_rows.append((label, known + ([("other", other)] if other > 0.01 else [])))
    figures = [
        _figure("TTFT distribution", svg.histogram("ttft-hist", (r["TTFT"] for r in reqs), "time to first token (s)"),
                "Time to first token per request; dashed lines at p50 and p95."),
        _figure("TPOT distribution", svg.histogram("tpot-hist", (r["TPOT"] for r in reqs), "time per output token (s)"),
                "Time per output token after the first."),
        _figure("Latency over time", svg.scatter_levels(
            "latency-time", [(r["Timestamp"], r["E2E"], r["E2ELevel"]) for r in reqs], "e2e latency (s)"),
                "End-to-end latency per request, coloured by its performance level."),
        _figure("Tokens per second", svg.line("tokens-time", throughput, "output tokens/s"), throughput_caption),
        _figure(f"Slowest {len(phase_rows)} requests: where time went",
                svg.waterfall("phase-waterfall", phase_rows, "seconds"),
                "Queue → prefill → decode of the slowest requests (trace id prefix, e2e)."),
        _figure("Model loads", svg.waterfall("load-waterfall", load_rows, "seconds"),
                "Engine start phases per model load (weights, compile, KV cache, warm-up)."),
        _figure("Alerts", svg.timeline("alerts-timeline", alert_intervals(d.alerts, d.since, d.until),
                                       _first_seen(d), d.until),
                "Firing intervals per rule (red critical, orange warning)."),
    ]
    window = (f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d.since))} – "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d.until))}")
    note = f" (newest {len(reqs)} requests shown)" if d.truncated else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>vllm-otel report</title><style>{_CSS}</style></head><body>"
            f"<h1>vLLM serving report</h1><div class=\"sub\">{html.escape(window)}{note}</div>"
            f"{_kpis(d)}<div class=\"grid\">{''.join(figures)}</div><script>{_JS}</script></body></html>")


def write_report(store, out: str | Path, since: float | None = None, until: float | None = None) -> Path:
    """Write the report for ``[since, until)`` (unix seconds; default the last 24 h) to ``out`` atomically.

    Returns the absolute path. Raises :class:`~vllm_otel_collector.errors.UserError` when the store cannot be read
    or ``out`` cannot be written.
    """
    from vllm_otel_collector.errors import UserError

    until = time.time() if until is None else until
    since = until - DEFAULT_WINDOW_S if since is None else since
    page = render_html(collect(store, since, until))
    out = Path(out).resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".report-", suffix=".html")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
