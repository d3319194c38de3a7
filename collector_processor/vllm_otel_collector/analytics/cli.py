"""``vllm-otel stats``, ``vllm-otel alerts``, ``vllm-otel export``, ``vllm-otel explain``.

Each reads either a running collector's read API (``--api URL``, default ``http://127.0.0.1:4319``, bearer token from
``--token`` or ``VLLM_OTEL_API_TOKEN``) or ClickHouse directly (``--clickhouse DSN`` or ``--data-dir DIR``), through
the same route handlers (:mod:`.api`), so both give identical answers; flags, store opening and the HTTP client are
:mod:`vllm_otel_collector.api.client`'s. Human tables (rich) by default, ``--json`` for machines.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from typing import Any

from vllm_otel_collector.api.client import DEFAULT_API, add_source_args
from vllm_otel_collector.api.client import fetch as fetch_source
from vllm_otel_collector.errors import UserError

__all__ = ["DEFAULT_API", "export_bytes", "fetch", "register"]


def _source_args(p: argparse.ArgumentParser) -> None:
    add_source_args(p)
    p.add_argument("--service", default="", help="only this service.name")
    p.add_argument("--model", default="", help="only this model")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``stats``, ``alerts``, ``explain`` and ``export`` to the root parser's ``sub``."""
    p = sub.add_parser("stats", help="request statistics: latency percentiles, rates, SLA, usage",
                       description="Window statistics per service/model/operation (current), per-minute/hour "
                                   "series (history) or merged rollups with usage by model and LoRA (aggregated).")
    _source_args(p)
    p.add_argument("--mode", choices=["current", "history", "aggregated"], default="current")
    p.add_argument("--window", type=float, help="seconds ending now (default 300; history 3600; aggregated 86400)")
    p.add_argument("--since", type=float, help="unix seconds")
    p.add_argument("--until", type=float, help="unix seconds")
    p.add_argument("--step", type=int, choices=[60, 3600], default=60, help="history bucket seconds")
    p.add_argument("--sla", type=float, help="SLA seconds for e2e compliance (default from config: 2)")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(func=run_stats)

    p = sub.add_parser("alerts", help="firing alerts (or the transition log with --all)")
    _source_args(p)
    p.add_argument("--all", action="store_true", help="every firing/resolved transition, newest first")
    p.add_argument("--since", type=float, help="with --all: unix seconds")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(func=run_alerts)

    p = sub.add_parser("explain", help="why one request was slow (or what one engine start cost)",
                       description="One request by trace id or request id: its timeline, its cause with the numbers "
                                   "behind it, the engine state at arrival, its SLOs and baseline, and its Jaeger "
                                   "link. A model-load trace id explains that engine start. Unknown id: exit 2.")
    p.add_argument("id", help="trace id (32 hex characters) or vLLM request id")
    _source_args(p)
    p.add_argument("--jaeger-url", default="", help="Jaeger UI base URL for the link (default http://localhost:16686)")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(func=run_explain)

    p = sub.add_parser("export", help="export llm_requests rows as JSON, CSV or Parquet")
    _source_args(p)
    p.add_argument("--format", choices=["json", "csv", "parquet"], default="json")
    p.add_argument("--output", "-o", default="-", help="file (default stdout; parquet needs a file)")
    p.add_argument("--since", type=float, help="unix seconds")
    p.add_argument("--until", type=float, help="unix seconds")
    p.add_argument("--status", choices=["ok", "error", "abort", "timeout"])
    p.add_argument("--trace-id", help="only this trace")
    p.add_argument("--limit", type=int, default=100_000)
    p.set_defaults(func=run_export)


# ---- data source -----------------------------------------------------------------------------------------------------
def fetch(args: argparse.Namespace, route: str, query: dict[str, Any]) -> dict:
    """GET ``route`` with ``query`` from the API, or run the analytics handler on the store ``args`` select.

    Raises ``UserError`` when the source is unreachable or answers an error.
    """
    from vllm_otel_collector.analytics.api import make_routes

    return fetch_source(args, route, query, make_routes())


def _print_json(body: Any) -> None:
    json.dump(body, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for h in headers:
        t.add_column(h, justify="left" if h in ("service", "model", "operation", "rule", "labels", "message",
                                               "lora", "severity", "since") else "right")
    for r in rows:
        t.add_row(*r)
    Console(width=None if sys.stdout.isatty() else 220).print(t)


def _goodput(g: dict | None) -> str:
    """``ratio (per second/s)`` of a stats ``goodput`` object; ``-`` when absent (an older collector)."""
    if not g or g.get("ratio") is None:
        return "-"
    return f"{g['ratio'] * 100:.1f}% ({g['per_second']:.3g}/s)"


def _causes_table(groups: list[tuple[str, str, str, dict | None]]) -> None:
    """Requests per cause (migration 0134) per group, when the answer has them."""
    from vllm_otel_collector.analytics.stats import CAUSES

    rows = [[svc, model, op, *(str(c.get(k, 0)) for k in CAUSES)] for svc, model, op, c in groups if c]
    if rows:
        _table("why slow: requests per cause", ["service", "model", "operation", *CAUSES], rows)


# ---- commands --------------------------------------------------------------------------------------------------------
def run_stats(args: argparse.Namespace) -> int:
    body = fetch(args, "/api/v1/stats", {"mode": args.mode, "window": args.window, "since": args.since,
                                         "until": args.until, "step": args.step, "sla": args.sla,
                                         "service": args.service, "model": args.model})
    if args.json:
        _print_json(body)
        return 0
    if args.mode == "current":
        rows = [[g["service"], g["model"], g["operation"], str(g["requests"]), _pct(g["success_rate"]),
                 _pct(g["error_rate"]), _pct(g["timeout_rate"]), _pct(g["cache_hit_rate"]),
                 _ms(g["latency"]["ttft"]["median"]), _ms(g["latency"]["ttft"]["p95"]),
                 _ms(g["latency"]["ttft"]["p99"]), _ms(g["latency"]["tpot"]["median"]),
                 _ms(g["latency"]["e2e"]["p95"]), _pct(g["sla"]["compliance"]), _goodput(g.get("goodput"))]
                for g in body["groups"]]
        _table(f"requests {time.strftime('%H:%M:%S', time.localtime(body['since']))}–"
               f"{time.strftime('%H:%M:%S', time.localtime(body['until']))}",
               ["service", "model", "operation", "requests", "success", "errors", "timeouts", "cache hits",
                "TTFT p50 ms", "TTFT p95 ms", "TTFT p99 ms", "TPOT p50 ms", "e2e p95 ms", "SLA", "goodput"], rows)
        _causes_table([(g["service"], g["model"], g["operation"], g.get("causes")) for g in body["groups"]])
    elif args.mode == "history":
        rows = [[time.strftime("%Y-%m-%d %H:%M", time.localtime(p["bucket"])), p["service"], p["model"],
                 str(p["requests"]), _pct(p["error_rate"]), _ms(p["ttft_p50"]), _ms(p["ttft_p95"]),
                 str(p["output_tokens"])] for p in body["points"]]
        _table("history", ["since", "service", "model", "requests", "errors", "TTFT p50 ms", "TTFT p95 ms",
                           "output tokens"], rows)
    else:
        rows = [[g["service"], g["model"], g["operation"], str(g["requests"]), _pct(g["error_rate"]),
                 _ms(g["ttft_p95"]), _ms(g["e2e_p95"]), str(g["input_tokens"]), str(g["output_tokens"]),
                 _pct(g.get("goodput_ratio"))] for g in body["groups"]]
        _table("aggregated", ["service", "model", "operation", "requests", "errors", "TTFT p95 ms", "e2e p95 ms",
                              "input tokens", "output tokens", "goodput"], rows)
        _causes_table([(g["service"], g["model"], g["operation"], g.get("causes")) for g in body["groups"]])
        _table("usage by model and LoRA", ["model", "lora", "requests", "input tokens", "output tokens"],
               [[u["model"], u["lora"] or "-", str(u["requests"]), str(u["input_tokens"]), str(u["output_tokens"])]
                for u in body["usage"]])
    return 0


def run_alerts(args: argparse.Namespace) -> int:
    body = fetch(args, "/api/v1/alerts", {"state": "all" if args.all else "firing", "since": args.since,
                                          "limit": args.limit})
    if args.json:
        _print_json(body)
        return 0
    rows = []
    for a in body["alerts"]:
        labels = ",".join(f"{k}={v}" for k, v in sorted(a["Labels"].items()))
        msg = a["Message"] + (f" — {a['Suggestion']}" if a.get("Suggestion") else "")
        rows.append(([a["Timestamp"], a["State"]] if args.all else [a["StartsAt"]])
                    + [a["RuleName"], a["Severity"], labels, msg])
    headers = (["at", "state"] if args.all else ["since"]) + ["rule", "severity", "labels", "message"]
    _table("alert transitions" if args.all else f"firing alerts: {len(rows)}", headers, rows)
    return 0


def export_bytes(rows: list[dict], fmt: str) -> bytes:
    """Serialize ``rows`` (dicts with equal keys) as json (array), csv (header row) or parquet (pyarrow)."""
    if fmt == "json":
        return (json.dumps(rows, default=str) + "\n").encode()
    if fmt == "csv":
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        return buf.getvalue().encode()
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("parquet export needs pyarrow (pip install pyarrow)") from None
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def run_export(args: argparse.Namespace) -> int:
    if args.format == "parquet" and args.output == "-":
        raise UserError("parquet is binary: give --output FILE")
    body = fetch(args, "/api/v1/requests", {"since": args.since, "until": args.until, "status": args.status,
                                            "trace_id": args.trace_id, "service": args.service, "model": args.model,
                                            "limit": args.limit})
    data = export_bytes(body["requests"], args.format)
    if args.output == "-":
        sys.stdout.write(data.decode())
    else:
        try:
            with open(args.output, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"wrote {len(body['requests'])} requests to {args.output} ({args.format})", file=sys.stderr)
    return 0


def _phase_bar(start: float, seconds: float | None, total: float, width: int = 40) -> str:
    if seconds is None or total <= 0:
        return ""
    a = min(width, int(round(start / total * width)))
    n = max(1 if seconds > 0 else 0, min(width - a, int(round(seconds / total * width))))
    return " " * a + "█" * n


def run_explain(args: argparse.Namespace) -> int:
    body = fetch(args, "/api/v1/explain", {"id": args.id, "jaeger_url": args.jaeger_url})
    if args.json:
        _print_json(body)
        return 0
    from rich.console import Console

    out = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    if body["kind"] == "model_load":
        out.print(f"[bold]engine start[/] {body['trace_id']}")
        out.print(body["sentence"])
        _table("phases", ["span", "start s", "seconds", ""],
               [[p["span"], f"{p['start']:.2f}", f"{p['seconds']:.2f}",
                 _phase_bar(p["start"], p["seconds"], body["total_seconds"])] for p in body["phases"]])
        out.print(f"trace: {body['jaeger_url']}")
        return 0
    lat, arr = body["latency"], body["arrival"]
    out.print(f"[bold]{body['model']}[/] request {body['request_id'] or body['span_id']} "
              f"(trace {body['trace_id']}) · {body['status']} · {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(body['timestamp']))} UTC")
    out.print(f"[bold]{body['cause']}[/] — {body['sentence']}")
    total = lat["e2e"] or lat["queue_plus_model"]
    _table("timeline (seconds from arrival)", ["phase", "start", "seconds", ""],
           [[t["phase"], f"{t['start']:.3f}", "-" if t["seconds"] is None else f"{t['seconds']:.3f}",
             _phase_bar(t["start"], t["seconds"], total)] for t in body["timeline"]])
    base = body["baseline"] or {}
    slo = body["slo"]
    _table("against its SLOs and baseline", ["metric", "this request", "SLO", "baseline"],
           [["TTFT ms", _ms(lat["ttft"]), _ms(slo["ttft"]), "-"],
            ["TPOT ms", _ms(lat["tpot"]), _ms(slo["tpot"]), _ms(base.get("tpot"))],
            ["queue ms", _ms(body["timeline"][0]["seconds"]), "-", _ms(base.get("queue"))],
            ["prefill ms", _ms(body["timeline"][1]["seconds"]), "-", _ms(base.get("prefill"))],
            ["E2E ms", _ms(lat["e2e"]), "-", _ms(base.get("expected_e2e"))]])
    tok = body["tokens"]
    out.print(f"tokens: {tok['input']} in ({tok['cached']} cached, prefix hit {_pct(tok['prefix_hit_share'])}), "
              f"{tok['output']} out · preemptions {body['preemptions']} · goodput: {'yes' if body['good'] else 'no'}")
    out.print("engine at arrival: " + ("not recorded" if arr["running"] is None and arr["kv_cache_usage"] is None
                                       else f"{arr['running']} running, {arr['waiting']} waiting, KV cache "
                                            f"{_pct(arr['kv_cache_usage'])} used"))
    out.print(f"trace: {body['jaeger_url']}" + (f" ({body['others']} more request spans in this trace)"
                                                if body.get("others") else ""))
    return 0
