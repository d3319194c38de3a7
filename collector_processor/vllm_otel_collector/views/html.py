"""``vllm-otel report``: one self-contained, interactive HTML page (Plotly; plotly.js inlined, nothing fetched).

Charts (element ids are stable, the browser test looks them up): ``ttft-hist`` and ``tpot-hist`` (distributions),
``ttft-heatmap``, ``tpot-heatmap``, ``e2e-heatmap`` (distribution over time: requests per time column × latency
bucket, rows labelled by their bounds), ``latency-time`` (e2e per request coloured by performance level),
``tokens-time`` (output tokens/s), ``phase-waterfall`` (queue → prefill → decode of the slowest requests, labelled by
trace id), ``load-waterfall`` (model-load phases per engine start), ``load-cold-warm`` (a cold start next to a warm
one — compile cache hit — per model), ``alerts-timeline`` (firing intervals). Every chart has hover values, zoom/pan
and legend toggles (Plotly's own). Units: seconds; tokens per second. The body gets ``data-plots`` (chart count) and
``data-ready="1"`` once every chart is drawn.

"Why slow" (migration 0134's ``Cause`` and ``Good``): ``causes-time`` (requests per cause over time, from the 1m
rollup), ``goodput-time`` (per model, throughput and goodput in requests/s over time, from the 1m rollup), the table
``goodput-table`` (per model over the minutes the rollup covers: requests, good, goodput ratio = good / requests,
throughput and goodput = requests and good per second, count per cause) and ``slow-table`` (the slowest requests by
e2e: cause, trace id, latencies against their SLOs and baselines, engine state at arrival, prefix-cache hit share).
"""

from __future__ import annotations

import html
import math
import os
import tempfile
import time
from pathlib import Path

from vllm_otel_collector.views import charts
from vllm_otel_collector.views.data import (CAUSES, ReportData, alert_intervals, cause_columns, collect,
                                            goodput_by_model, goodput_series)

#: Default window when no ``since`` is given: the last 24 hours.
DEFAULT_WINDOW_S = 24 * 3600
SLOWEST_N = 12

# The modebar (zoom, pan, reset, PNG) is moved up into the chart's title row so that it never covers a legend.
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:0 0 6px}.sub{color:#666;font-size:13px;margin-bottom:16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:16px}
figure{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;margin:0;min-width:0}
figcaption{font-size:12px;color:#555;margin-top:4px}.chart{width:100%}
.js-plotly-plot .plotly .modebar{top:-27px!important}

table{border-collapse:collapse;font-size:13px;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}.kpis{margin-bottom:16px}
h2.section{font-size:18px;margin:24px 0 8px}.wide{overflow-x:auto;margin-top:16px}.wide caption{text-align:left;
font-size:13px;color:#555;padding:4px 0}.wide td,.wide th{white-space:nowrap}
"""

# Draws every chart from its JSON spec; marks the page ready when all are drawn (the browser test waits on it).
_JS = """
(function(){var divs=document.querySelectorAll('div.chart'),n=divs.length,done=0;
document.body.setAttribute('data-plots',String(n));document.body.setAttribute('data-ready',n?'0':'1');
divs.forEach(function(d){var f=JSON.parse(document.getElementById('spec-'+d.id).textContent);
Plotly.newPlot(d,f.data,f.layout,{responsive:true,displaylogo:false,scrollZoom:false}).then(function(){
done++;if(done===n){document.body.setAttribute('data-ready','1');}});});})();
"""


_q = charts.quantile


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
    step = min(charts.time_step(span), 60)
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


def cold_warm_pairs(loads: list[dict]) -> list[tuple[str, dict, dict]]:
    """``(model, cold, warm)`` per model that has both: its newest load with a compile cache miss
    (``CompileCacheHit == 0``) and its newest with a hit (``== 1``); loads oldest first."""
    newest: dict[tuple[str, int], dict] = {}
    for ld in loads:
        if ld["CompileCacheHit"] in (0, 1):
            newest[(ld["Model"], ld["CompileCacheHit"])] = ld
    models = sorted({m for m, _ in newest})
    return [(m, newest[(m, 0)], newest[(m, 1)]) for m in models if (m, 0) in newest and (m, 1) in newest]


def _figure(chart_id: str, title: str, fig, caption: str) -> str:
    spec = fig.to_json().replace("</", "<\\/")  # inside <script>: no closing tag from a label
    empty = "true" if not fig.data else "false"
    return (f"<figure><h2>{html.escape(title)}</h2><div class=\"chart\" id=\"{chart_id}\" data-empty=\"{empty}\">"
            f"</div><script type=\"application/json\" id=\"spec-{chart_id}\">{spec}</script>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _figures(d: ReportData) -> list[str]:
    reqs = d.requests
    slowest = sorted((r for r in reqs if r["E2E"] is not None), key=lambda r: r["E2E"], reverse=True)[:SLOWEST_N]
    phase_rows = [(f"{r['TraceId'][:12]}… {r['E2E']:.2f} s", f"trace {r['TraceId']}",
                   [("queue", r["Queue"]), ("prefill", r["Prefill"]), ("decode", r["Decode"])]) for r in slowest]
    throughput, throughput_caption = _throughput(d)
    load_rows = []
    for ld in d.loads:
        hit = {1: " (cache hit)", 0: " (cold compile)"}.get(ld["CompileCacheHit"], "")
        label = f"{time.strftime('%m-%d %H:%M', time.localtime(ld['Timestamp']))} {ld['Model']}{hit}"
        load_rows.append((label, f"trace {ld['TraceId']}, load {ld['LoadSeconds']:.1f} s", charts.load_phases(ld)))
    pairs = cold_warm_pairs(d.loads)
    heat = [("ttft-heatmap", "TTFT", "TTFT (s)"), ("tpot-heatmap", "TPOT", "TPOT (s)"),
            ("e2e-heatmap", "E2E", "e2e latency (s)")]
    return [
        _figure("ttft-hist", "TTFT distribution", charts.histogram((r["TTFT"] for r in reqs),
                                                                   "time to first token (s)", "TTFT"),
                "Time to first token per request; dashed line p50, dotted p95."),
        _figure("tpot-hist", "TPOT distribution", charts.histogram((r["TPOT"] for r in reqs),
                                                                   "time per output token (s)", "TPOT"),
                "Time per output token after the first."),
        *[_figure(cid, f"{col} distribution over time", charts.heatmap([(r["Timestamp"], r[col]) for r in reqs], yt),
                  f"Requests per time column and {col} bucket, from the request rows; each row is labelled by its "
                  f"bounds in seconds (bucket [lo, hi), {charts.BUCKETS_PER_DECADE} per decade: "
                  f"{', '.join(f'{m:g}' for m in charts.MANTISSAS)} × 10ⁿ s).") for cid, col, yt in heat],
        _figure("latency-time", "Latency over time", charts.latency_levels(reqs),
                "End-to-end latency per request, coloured by its performance level (click a legend entry to hide "
                "it; hover for the trace id)."),
        _figure("tokens-time", "Tokens per second", charts.line(throughput, "output tokens/s", "tokens/s"),
                throughput_caption),
        _figure("phase-waterfall", f"Slowest {len(phase_rows)} requests: where time went",
                charts.phase_bars(phase_rows, "seconds"),
                "Queue → prefill → decode of the slowest requests (trace id prefix and e2e; hover for the full id)."),
        _figure("load-waterfall", "Model loads", charts.phase_bars(load_rows, "seconds"),
                "Engine start phases per model load (weights, compile, KV cache, warm-up)."),
        _figure("load-cold-warm", "Cold vs warm start", charts.cold_vs_warm(pairs),
                "Per model: its newest start with a compile cache miss next to its newest with a hit."),
        _figure("alerts-timeline", "Alerts", charts.timeline(alert_intervals(d.alerts, d.since, d.until),
                                                             _first_seen(d), d.until),
                "Firing intervals per rule (red critical, orange warning)."),
    ]


def _n(v, digits: int = 3, unit: str = "") -> str:
    return "–" if v is None else f"{v:.{digits}f}{unit}"


def _table(table_id: str, caption: str, head: list[str], rows: list[list[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows) or (
        f'<tr><td colspan="{len(head)}">{html.escape(empty)}</td></tr>')
    return (f'<div class="wide"><table id="{table_id}"><caption>{html.escape(caption)}</caption><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{body}</table></div>")


def _goodput_table(d: ReportData) -> str:
    seconds, rows = goodput_by_model(d.minutes)
    cells = [[r["Model"], str(r["Requests"]), str(r["Good"]),
              _n(None if r["ratio"] is None else r["ratio"] * 100, 1, " %"), _n(r["throughput"], 4),
              _n(r["goodput"], 4), *(str(r[c]) for c in CAUSES)] for r in rows]
    caption = (f"Per model over the {seconds / 60:.0f} rollup minutes with requests (first to last): goodput = "
               "requests that finished ok within their model's TTFT and TPOT SLOs; ratio = good / requests; req/s = "
               "count / those seconds.")
    return _table("goodput-table", caption, ["model", "requests", "good", "goodput ratio", "throughput req/s",
                                            "goodput req/s", *CAUSES], cells, "no requests in this window")


def _slow_table(d: ReportData) -> str:
    slowest = sorted((r for r in d.requests if r["E2E"] is not None), key=lambda r: r["E2E"], reverse=True)[:SLOWEST_N]

    def vs(v, ref):  # a latency against its SLO / baseline ("–" when there is none)
        return f"{_n(v)} / {_n(ref) if ref else '–'}"

    def arrival(r):
        if r["RunningAtArrival"] is None and r["WaitingAtArrival"] is None:
            return "–"
        return f"{'–' if r['RunningAtArrival'] is None else r['RunningAtArrival']} / " \
               f"{'–' if r['WaitingAtArrival'] is None else r['WaitingAtArrival']}"

    def share(v):
        return _n(None if v is None else v * 100, 0, " %")

    cells = [[time.strftime("%H:%M:%S", time.localtime(r["Timestamp"])), r["Model"], r["TraceId"], r["Cause"],
              r["Status"], _n(r["E2E"]), vs(r["TTFT"], r["SLOTTFT"]), vs(r["TPOT"], r["SLOTPOT"]),
              vs(r["Queue"], r["BaselineQueue"]), vs(r["Prefill"], r["BaselinePrefill"]), str(r["OutputTokens"]),
              arrival(r), share(r["KVCacheUsageAtArrival"]), share(r["PrefixHitShare"])] for r in slowest]
    head = ["time", "model", "trace id", "cause", "status", "e2e s", "TTFT s / SLO", "TPOT s / SLO",
            "queue s / baseline", "prefill s / baseline", "out tok", "running / waiting at arrival",
            "KV cache at arrival", "prefix hit"]
    return _table("slow-table", f"The {len(slowest)} slowest requests by e2e and why (cause: the phase that made "
                  "it slow; baseline: the model's median for that prompt length).", head, cells,
                  "no requests in this window")


def _why_slow(d: ReportData) -> str:
    span = max(m["Bucket"] for m in d.minutes) - min(m["Bucket"] for m in d.minutes) if d.minutes else 0
    step = max(60, charts.time_step(span))
    figs = [
        _figure("causes-time", "Why slow: requests per cause",
                charts.cause_bars(cause_columns(d.minutes, step), step),
                f"Requests per cause in {step // 60} min columns (1m rollup): queued, prefill, decode, preempted "
                "(slow against the model's SLO or its baseline), aborted, error; ok is hidden (click it in the "
                "legend)."),
        _figure("goodput-time", "Goodput vs throughput", charts.goodput_lines(goodput_series(d.minutes, step)),
                f"Per model, requests/s (solid) and good requests/s (dashed: finished ok within the TTFT and TPOT "
                f"SLOs) in {step // 60} min columns (1m rollup)."),
    ]
    return (f'<h2 class="section" id="why-slow">Why slow</h2><div class="grid">{"".join(figs)}</div>'
            f"{_goodput_table(d)}{_slow_table(d)}")


def render_html(d: ReportData) -> str:
    """The page for ``d`` as one string (UTF-8; plotly.js inlined, no external references)."""
    from plotly.offline import get_plotlyjs

    window = (f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d.since))} – "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d.until))}")
    note = f" (newest {len(d.requests)} requests shown)" if d.truncated else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>vllm-otel report</title><style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>"
            f"<h1>vLLM serving report</h1><div class=\"sub\">{html.escape(window)}{note}</div>"
            f"{_kpis(d)}<div class=\"grid\">{''.join(_figures(d))}</div>{_why_slow(d)}<script>{_JS}</script>"
            "</body></html>")


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
