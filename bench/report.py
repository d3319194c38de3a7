"""``docs/BENCHMARKS.md`` (and the PNGs, via :mod:`bench.plots`) from the result files of :mod:`bench.run`.

``render(results_dir, docs_path)`` reads every ``<name>.json`` present and writes the Markdown: method, environment,
tables, each target with met/missed and by how much, and the analysis paragraphs kept by hand in
``bench/analysis.md`` (sections ``## <name>``: the numbers come from the JSON, the "what limits it" reasoning from
that file).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from bench.common import ROOT
from bench.plots import PLOTS

ANALYSIS = ROOT / "bench" / "analysis.md"
ORDER = ("overhead", "overhead_served", "ingest", "queries", "storage", "truth", "analytics_insert")
TITLES = {"overhead": "1. Instrumentation overhead", "overhead_served": "1b. Instrumentation overhead, served",
          "ingest": "2. Collector ingest", "queries": "3. Queries",
          "storage": "4. Storage", "truth": "5. Truth (TTFT)",
          "analytics_insert": "6. Analytics in ClickHouse: what the materialized views cost at insert"}


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"
    return str(v)


def _sp(s: dict | None, digits: int = 3) -> str:
    """``median (min…max)`` of a :func:`bench.common.spread` dict."""
    if not s or s.get("median") is None:
        return "–"
    return f"{_f(s['median'], digits)} ({_f(s['min'], digits)}…{_f(s['max'], digits)})"


def _analysis() -> dict[str, str]:
    if not ANALYSIS.is_file():
        return {}
    parts = re.split(r"^## +(\w+)\s*$", ANALYSIS.read_text(), flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def _targets(res: dict) -> list[str]:
    t = res.get("targets") or {}
    if "met" in t and not isinstance(t["met"], dict):  # bench/collector/ingest.py's flat form
        t = {k: {"target": v, "measured": res["summary"]["grpc"]["spans_per_cpu_s"], "met": t["met"]}
             for k, v in t.items() if k != "met"}
    lines = ["| target | goal | measured | met | gap |", "|---|---|---|---|---|"]
    for name, spec in t.items():
        goal, got = spec.get("target"), spec.get("measured")
        gap = ""
        if not spec.get("met") and isinstance(goal, (int, float)) and isinstance(got, (int, float)) and goal:
            gap = f"{got / goal:.2f}× the goal"
        got_s = ", ".join(f"{k} {_f(v)}" for k, v in got.items()) if isinstance(got, dict) else _f(got)
        lines.append(f"| {name} | {_f(goal)} | {got_s} | {'✅' if spec.get('met') else '❌'} | {gap} |")
    return lines


def _variant_table(summ: dict, cpu_label: str) -> list[str]:
    """The per-variant table both overhead sections share (cells: median (min…max) over rounds)."""
    out = [f"| variant | throughput tok/s | throughput ratio | TTFT p50 ratio | TTFT p99 ratio | {cpu_label} CPU "
           "µs/req | CPU µs added/req | spans/req | metric points |", "|---|---|---|---|---|---|---|---|---|"]
    for v in summ["config"]["variants"]:
        s = summ[v]
        if "error" in s:
            out.append(f"| {v} | failed: {s['error']} | | | | | | | |")
            continue
        out.append(f"| {v} | {_sp(s['throughput_tok_s'])} | {_sp(s['throughput_ratio'])} | "
                   f"{_sp(s['ttft_p50_ratio'])} | {_sp(s['ttft_p99_ratio'])} | {_sp(s['cpu_us_per_request'])} | "
                   f"{_sp(s['cpu_us_added_per_request'])} | {_f(s['spans_per_request'])} | "
                   f"{_f(s['metric_points'])} |")
    return out


def _overhead(res: dict) -> list[str]:
    out = []
    for model, summ in res["summary"].items():
        cfg = summ["config"]
        out += [f"**{model}** — {cfg['requests_per_round']} requests × {cfg['max_tokens']} output tokens per round, "
                f"{cfg['rounds']} recorded rounds. Cells: median (min…max over rounds); ratios are per-round "
                "variant / uninstrumented.", ""]
        out += _variant_table(summ, "frontend")
        out += ["", f"![overhead {model}](../bench/results/overhead_{model}.png)", ""]
    floor = res.get("sdk_floor")
    if floor:
        out += ["OpenTelemetry Python SDK alone (no vLLM; :mod:`bench.instrumentation.sdk_floor`), CPU µs per request: "
                f"1 span with 25 attributes + 1 event: {_f(floor['noexport_1_spans_us'])} not exported, "
                f"{_f(floor['otlp_1_spans_us'])} exported over OTLP/gRPC; 4 spans: "
                f"{_f(floor['noexport_4_spans_us'])} / {_f(floor['otlp_4_spans_us'])}.", ""]
    return out


def _ingest(res: dict) -> list[str]:
    out = ["| stage | spans per CPU-second (median) | min | max | spans per wall second |", "|---|---|---|---|---|"]
    for stage, s in res["summary"].items():
        out.append(f"| {stage} | {_f(s['spans_per_cpu_s'])} | {_f(s['min'])} | {_f(s['max'])} | "
                   f"{_f(s.get('spans_per_wall_s'))} |")
    ratios = res.get("ratios") or {}
    if ratios:
        out += ["", "Same-round ratios (median): " + ", ".join(f"{k} {v:.1f}×" for k, v in ratios.items()) + "."]
    return out + ["", "![ingest](../bench/results/ingest.png)", ""]


def _vol(n) -> str:
    """``1000000`` → ``1M``."""
    n = int(n)
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else (f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}")


def _queries_table(summary: dict, names: list[str], vols: list[str]) -> list[str]:
    small, big = vols[0], vols[-1]
    vb = _vol(big)
    both = f"{_vol(small)} / {vb}"
    out = [f"| panel | rollup p50 / p95 ms ({vb}) | p50 ÷ floor {both} | ≤ 10× | rollup read_rows {both} | "
           f"raw read_rows {both} | raw p50 ms ({vb}) | raw ÷ rollup p50 {both} | per-rep raw ÷ rollup ({vb}) | "
           "answers equal (max rel. diff) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        s = summary[name]
        fr, rr, sp = s["floor_ratio_by_volume"], s["read_rows_by_volume"], s["speedup_by_volume"]
        worst = max(v for v in fr.values() if v is not None)
        same = "" if s.get("read_rows_same_at_both_volumes", True) else " ≠"
        out.append(f"| {name}: {s['description']} | {_f(s['rollup_ms']['p50'])} / {_f(s['rollup_ms']['p95'])} | "
                   f"{_f(fr[small])}× / {_f(fr[big])}× | {'✅' if worst <= 10.0 else '❌'} | "
                   f"{rr[small]['rollup']:,} / {rr[big]['rollup']:,}{same} | "
                   f"{rr[small]['raw']:,} / {rr[big]['raw']:,} | "
                   f"{_f(s['raw_ms']['p50'])} | {_f(sp[small])}× / {_f(sp[big])}× | {_sp(s['speedup_per_rep'])} | "
                   f"{_f(s['answers']['exact_counts'])} ({_f(s['answers']['max_rel_err'])}) |")
    return out


def _queries_run(res: dict) -> str:
    """The run's own sentence after the method: when, how loaded, how long."""
    env = res.get("environment") or {}
    o = res["summary"]["overall"]
    date = (env.get("date_utc") or "")[:16] + ("Z" if env.get("date_utc") else "")
    load = max((env.get("loadavg_at_start") or [0])[:2])
    return (f"Run {date} (bench/results/queries.json), load average ~{load:.1f} on the {env.get('cores')} shared "
            f"cores; the whole benchmark (both volumes, {_vol(o['rows'])} inserted in {o['insert_seconds']:.0f} s) "
            f"took {res.get('elapsed_s', 0):.0f} s.")


def _queries(res: dict) -> list[str]:
    summ = res["summary"]
    o = summ["overall"]
    if "floor_ratio_by_volume" not in next(s for n, s in summ.items() if n != "overall"):
        return _queries_single(res)
    vols = [str(v) for v in o["volumes"]]
    small = o["small"]
    views = len(o["table_rows"]) - 1
    views_s = {2: "both materialized views", 3: "the three materialized views"}.get(views, "the materialized views")
    out = [f"Volumes: {_vol(vols[0])} requests ({small['insert_seconds']:.0f} s to insert, table rows "
           f"{small['table_rows']}) and {_vol(vols[-1])} ({o['insert_seconds']:.0f} s, {_f(o['insert_rows_per_s'])} "
           f"rows/s including {views_s}; table rows {o['table_rows']}), each over 7 days in its own database; "
           f"{o['reps']} timed repetitions per volume. Floor (`SELECT 1` through the same client, run before every "
           f"panel in every repetition): p50 {_f(small['floor_ms']['p50'])} ms at {_vol(vols[0])}, "
           f"{_f(o['floor_ms']['p50'])} ms at {_vol(vols[-1])} (p95 {_f(small['floor_ms']['p95'])} / "
           f"{_f(o['floor_ms']['p95'])} ms).", ""]
    names = [n for n in summ if n != "overall"]
    out += ["**Dashboard panels** (issue 24's goals apply: the `grafana_*` rows run the dashboard's own SQL):", ""]
    out += _queries_table(summ, [n for n in names if summ[n].get("dashboard")], vols)
    out += ["", "**Read-API forms and the old fixed-minute heatmap** (raw-vs-rollup history):", ""]
    out += _queries_table(summ, [n for n in names if not summ[n].get("dashboard")], vols)
    st = o.get("storage")
    if st:
        out += ["", "Rollup storage (compressed, per request; histogram columns in brackets): " + ", ".join(
            f"{t} {v['bytes_per_request']:.1f} B ({v['histogram_bytes_per_request']:.1f} B)" for t, v in st.items())
            + f". Quantile error vs exact raw quantiles: max {o['quantile_max_rel_err']:.3%} (bound "
            f"{o['quantile_error_bound']:.3%}, histogram scale {o['histogram_scale']})."]
    return out + ["", "![queries](../bench/results/queries.png)", ""]


def _queries_single(res: dict) -> list[str]:
    """Result files of one volume (before issue 24): raw vs rollup only."""
    o = res["summary"]["overall"]
    out = [f"{o['rows']:,} requests inserted in {o['insert_seconds']:.0f} s ({_f(o['insert_rows_per_s'])} rows/s "
           f"including both materialized views); table rows {o['table_rows']}; {o['reps']} timed repetitions. "
           f"Floor (`SELECT 1` through the same client): p50 {_f((o.get('floor_ms') or {}).get('p50'))} ms, "
           f"p95 {_f((o.get('floor_ms') or {}).get('p95'))} ms.", "",
           "| panel | raw p50 / p95 ms | rollup p50 / p95 ms | speedup (p50) | per-rep speedup | counts equal | "
           "max rel. diff |", "|---|---|---|---|---|---|---|"]
    for name, s in res["summary"].items():
        if name == "overall":
            continue
        out.append(f"| {name}: {s['description']} | {_f(s['raw_ms']['p50'])} / {_f(s['raw_ms']['p95'])} | "
                   f"{_f(s['rollup_ms']['p50'])} / {_f(s['rollup_ms']['p95'])} | {_f(s['speedup_p50'])}× | "
                   f"{_sp(s['speedup_per_rep'])} | {_f(s['answers']['exact_counts'])} | "
                   f"{_f(s['answers']['max_rel_err'])} |")
    st = o.get("storage")
    if st:
        out += ["", "Rollup storage (compressed, per request; histogram columns in brackets): " + ", ".join(
            f"{t} {v['bytes_per_request']:.1f} B ({v['histogram_bytes_per_request']:.1f} B)" for t, v in st.items())
            + f". Quantile error vs exact raw quantiles: max {o['quantile_max_rel_err']:.3%} (bound "
            f"{o['quantile_error_bound']:.3%}, histogram scale {o['histogram_scale']})."]
    return out + ["", "![queries](../bench/results/queries.png)", ""]


def _storage(res: dict) -> list[str]:
    s = res["summary"]
    t = res["samples"]["tables"]
    out = [f"{s['requests']:,} requests, {s['spans']:,} spans ({s['spans_per_request']:.0f} per request, request "
           f"span with {s['request_span_attributes']:.0f} attributes).", "",
           "| table | rows | compressed bytes | uncompressed bytes | compressed B/row |", "|---|---|---|---|---|"]
    for name, v in t.items():
        per = v["compressed_bytes"] / v["rows"] if v["rows"] else None
        out.append(f"| {name} | {v['rows']:,} | {v['compressed_bytes']:,} | {v['uncompressed_bytes']:,} | "
                   f"{_f(per)} |")
    cols = res["samples"]["columns"]["llm_requests"]
    top = ", ".join(f"{k} {v / s['requests']:.1f}" for k, v in list(cols.items())[:6])
    out += ["", f"- llm_requests: **{s['llm_requests_bytes_per_request']:.1f} B/request** compressed "
            f"({s['llm_requests_uncompressed_bytes_per_request']:.0f} B uncompressed); largest columns (B/request): "
            f"{top}.",
            f"- otel_traces: {s['otel_traces_bytes_per_span']:.1f} B/span; the stock collector-contrib layout keeps "
            f"only spans: **{s['stock_contrib_bytes_per_request']:.0f} B/request** "
            f"({s['ratio_stock_over_llm_requests']:.1f}× llm_requests).",
            f"- llm_requests + 1m/1h rollups: {s['ours_analytics_bytes_per_request']:.1f} B/request.",
            "", "![storage](../bench/results/storage.png)", ""]
    return out


def _truth(res: dict) -> list[str]:
    out = ["| model | requests / joined | client − span TTFT ms p1 / p50 / p99 | derived row − span ms (max abs) | "
           "span mean − vLLM histogram mean, ms |", "|---|---|---|---|---|"]
    for model, r in res["summary"]["served"].items():
        d, dd = r["client_minus_span"], r["derived_minus_span"]
        out.append(f"| {model} (served) | {r['requests']} / {r['joined']} | {_f(d['p1_ms'])} / {_f(d['p50_ms'])} / "
                   f"{_f(d['p99_ms'])} | {_f(max(abs(dd['min_ms']), abs(dd['max_ms'])) if dd['n'] else None)} | "
                   f"{_f(r['span_vs_vllm_mean_ms'])} |")
    for model, r in res["summary"].get("offline", {}).items():
        d = r["span_minus_vllm"]
        out.append(f"| {model} (offline, vs RequestStateStats.first_token_latency per request) | {r['pairs']} | – | – | "
                   f"p50 {_f(d['p50_ms'])}, max abs {_f(max(abs(d['min_ms'] or 0), abs(d['max_ms'] or 0)))} |")
    return out + ["", "![truth](../bench/results/truth.png)", ""]


def _overhead_served(res: dict) -> list[str]:
    out = []
    for model, summ in res["summary"].items():
        cfg = summ["config"]
        out += [f"**{model}** — {cfg['requests_per_round']} streaming chat requests ({cfg['concurrency']} in flight) × "
                f"{cfg['max_tokens']} tokens per round, {cfg['rounds']} recorded rounds; TTFT as the client sees it; "
                "CPU of the API-server process.", ""]
        out += _variant_table(summ, "API-server")
        steps = {v: summ[v]["engine_steps_per_request"]["median"] for v in summ
                 if isinstance(summ[v], dict) and "engine_steps_per_request" in summ[v]}
        if steps:
            out += ["", "Engine steps per request (vLLM's own `vllm:iteration_tokens_total` count over the round, "
                    "median): " + ", ".join(f"{v} {_f(n)}" for v, n in steps.items()) + "."]
        out += ["", f"![served overhead {model}](../bench/results/overhead_served_{model}.png)", ""]
    out += _served_breakdown(res.get("breakdown") or {})
    floor = res.get("handover_floor")
    if floor:
        out += ["The same hand-over code warm in an idle process (:func:`bench.instrumentation.sdk_floor.measure_handover`), CPU µs: "
                f"a finished request's facts + its share of a 16-request message {_f(floor['request_facts_us'])}; "
                f"one engine step (16 running, 16 inter-token latencies, 1 finished request) read into step facts "
                f"+ its share of a 40-step message {_f(floor['engine_step_us'])}"
                + (f" (records built in the server instead: {_f(floor['engine_step_records_us'])})"
                   if "engine_step_records_us" in floor else "") + ".", ""]
    return out


def _served_breakdown(b: dict) -> list[str]:
    """API-server CPU per thread (psutil) and the telemetry's per-hook thread CPU (``VLLM_OTEL_BENCH_HOOK_TIMES``)."""
    if not b.get("ours"):
        return []
    variants = [v for v in ("none", "ours", "ours_statlogger", "ours_inprocess", "ours_child", "native") if v in b]
    names = sorted({n for v in variants for n in b[v]["threads_us_per_request"]},
                   key=lambda n: (-b["ours"]["threads_us_per_request"].get(n, 0.0), n))  # ties by name: stable
    out = ["API-server CPU per thread, µs per request (median over rounds; psutil per-thread times, thread names from "
           "the hook accounting of `ours`, so other variants show only the main thread and the rest):", "",
           "| thread | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for n in names:
        out.append(f"| {n} | " + " | ".join(_f(b[v]["threads_us_per_request"].get(n)) for v in variants) + " |")
    ours = [v for v in ("ours", "ours_statlogger", "ours_inprocess", "ours_child") if v in b]
    keys = {k for v in ours for k in b[v]["hooks_us_per_request"]}
    out += ["", "Telemetry's own CPU by hook (`time.thread_time_ns` around each hook, `VLLM_OTEL_BENCH_HOOK_TIMES`; "
            "median over rounds; calls/request, µs/request):", "",
            "| hook @ thread | " + " | ".join(f"{v} calls | {v} µs" for v in ours) + " |",
            "|---|" + "---|---|" * len(ours)]
    for k in sorted(keys, key=lambda k: (-b["ours"]["hooks_us_per_request"].get(k, [0, 0])[0], k)):
        cells = [(b[v]["hooks_us_per_request"].get(k) or [None, None]) for v in ours]
        out.append(f"| {k.replace('@', ' @ ')} | " + " | ".join(f"{_f(c[1])} | {_f(c[0])}" for c in cells) + " |")
    tele = [v for v in ours if b[v].get("telemetry_us_per_request")]
    if tele:
        out += ["", "Telemetry's own API-server CPU per request, µs (its threads — writer, engine metrics, sweeper, the "
                "SDK's span processor and metric reader — plus its hooks on the event loop; median (min…max) over "
                "rounds; the telemetry child's CPU is outside the API server and listed in the thread table):", "",
                "| variant | telemetry µs/req | accounting's estimated share subtracted |", "|---|---|---|"]
        for v in tele:
            t = b[v]["telemetry_us_per_request"]
            net = b[v].get("telemetry_net_us_per_request")
            out.append(f"| {v} | {_f(t['median'])} ({_f(t['min'])}…{_f(t['max'])}) | "
                       + (f"{_f(net['median'])} ({_f(net['min'])}…{_f(net['max'])})" if net else "–") + " |")
    return out + [""]


def _analytics_insert(res: dict) -> list[str]:
    s = res["summary"]
    out = [f"Exporter-shaped spans (one in four a request span) in Native blocks, {s['rounds']} rounds per block size, "
           "bare and analytics databases alternating; medians (min…max) over the rounds.", "",
           "| block rows | spans | inserts | CPU ratio analytics / bare | extra CPU per insert (ms) | "
           "extra CPU per request span (µs) | bare spans / CPU-s | analytics spans / CPU-s |",
           "|---|---|---|---|---|---|---|---|"]
    for rows, b in s["by_block_rows"].items():
        out.append(f"| {int(rows):,} | {b['spans']:,} | {b['inserts']:,} | {_sp(b['cpu_ratio'])} | "
                   f"{_sp(b['extra_ms_per_insert'])} | {_sp(b['extra_us_per_request_span'])} | "
                   f"{_sp(b['bare_spans_per_cpu_s'])} | {_sp(b['analytics_spans_per_cpu_s'])} |")
    if all("causes_cpu_ratio" in b for b in s["by_block_rows"].values()):
        out += ["", "What issue 24's migrations add (0134: causes, goodput, engine state at arrival, baselines; 0135: the "
                "5-minute rollup), against the analytics up to 0133 in the same rounds:", "",
                "| block rows | CPU ratio with / without 0134–0135 | extra CPU per insert (ms) | extra CPU per request span (µs) |",
                "|---|---|---|---|"]
        for rows, b in s["by_block_rows"].items():
            out.append(f"| {int(rows):,} | {_sp(b['causes_cpu_ratio'])} | {_sp(b['causes_extra_ms_per_insert'])} | "
                       f"{_sp(b['causes_extra_us_per_request_span'])} |")
    out += ["", "Deterministic checks: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in s["checks"].items())
            + "."]
    return out + [""]


#: A sentence about the run itself, after the method (when, how loaded, how long).
RUN_NOTES = {"queries": _queries_run}

SECTIONS = {"analytics_insert": _analytics_insert, "overhead": _overhead, "overhead_served": _overhead_served, "ingest": _ingest, "queries": _queries, "storage": _storage, "truth": _truth}


def render(results_dir: Path, docs_path: Path) -> Path:
    """Draw the plots into ``results_dir`` and write ``docs_path``; returns ``docs_path``."""
    results = {}
    for name in ORDER:
        p = results_dir / f"{name}.json"
        if p.is_file():
            results[name] = json.loads(p.read_text())
    notes = _analysis()
    env = next((r["environment"] for r in results.values() if r.get("environment")), {})
    rel = os.path.relpath(results_dir, docs_path.parent)
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (`python -m bench.run`) from `bench/results/*.json`; do not edit by hand — "
             "the analysis paragraphs live in `bench/analysis.md`. Benchmarks never fail CI on a number; CI runs "
             "`--smoke` only.", "",
             "## Environment", "",
             f"- CPU: {env.get('cpu_model')}, {env.get('cores')} cores, {env.get('memory_gib')} GiB; load average at "
             f"start {env.get('loadavg_at_start')} (the machine is shared with other jobs: noisy by design of the "
             "method below)",
             f"- Python {env.get('python')}; " + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items()
                                                           if v),
             "- Runs (UTC): " + ", ".join(f"{n} {r['environment'].get('date_utc')}" for n, r in results.items()
                                         if r.get("environment")), "",
             "## Method", "",
             "These machines are noisy (back-to-back runs of the same vLLM workload vary ±15 %). Variants are compared "
             "within one run, interleaved with several repetitions; tables give medians with (min…max) and per-round "
             "ratios; CPU time (`time.process_time`) is reported where wall time is too noisy.", ""]
    if "overview" in notes:
        lines += [notes["overview"], ""]
    for name in ORDER:
        lines += [f"## {TITLES[name]}", ""]
        res = results.get(name)
        if res is None:
            lines += ["Not run yet.", ""]
            continue
        if res.get("error"):
            lines += [f"**Failed:** {res['error']}", ""]
        else:
            run_note = RUN_NOTES[name](res) if name in RUN_NOTES else ""
            lines += [f"*Method.* {res.get('method', '')}" + (f" {run_note}" if run_note else ""), ""]
            try:
                for p in PLOTS[name](res, results_dir):
                    pass
                body = SECTIONS[name](res)
                lines += [b.replace("../bench/results", rel) for b in body]
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                lines += [f"(result file present but not in the expected shape: {type(exc).__name__}: {exc})", ""]
            lines += ["*Targets.*", "", *_targets(res), ""]
            if res.get("smoke"):
                lines += ["*(smoke-sized run: numbers are not meaningful)*", ""]
        if name in notes:
            lines += [notes[name], ""]
    docs_path.parent.mkdir(parents=True, exist_ok=True)
    docs_path.write_text("\n".join(lines).rstrip() + "\n")
    return docs_path
