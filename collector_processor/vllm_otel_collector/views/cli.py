"""``vllm-otel report`` (HTML page from ClickHouse) and ``vllm-otel top`` (live view from the read API or
ClickHouse)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vllm_otel_collector.api.client import DEFAULT_API, add_source_args, open_store, reads_store
from vllm_otel_collector.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` and ``top`` to the root parser's ``sub``."""
    p = sub.add_parser("report", help="write a self-contained HTML report (plots) from ClickHouse",
                       description="Read llm_requests, rollups, model loads and alerts from ClickHouse and write one "
                                   "self-contained, interactive HTML page (Plotly, plotly.js inlined; opens offline).")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="output file (default report.html)")
    p.add_argument("--since", default="24h", help="start: duration back from now (30m, 6h, 2d), ISO time or unix s "
                                                  "(default 24h)")
    p.add_argument("--until", default=None, help="end: ISO time or unix seconds (default now)")
    add_source_args(p, api=False)
    p.set_defaults(func=run_report)

    p = sub.add_parser("top", help="live terminal view: request rate, p95 TTFT/TPOT, tokens/s, KV cache, alerts",
                       description="Refresh from the collector's read API (/api/v1/stats, /api/v1/alerts, "
                                   "/api/v1/engine, /api/v1/startup) every --interval seconds, or with --clickhouse "
                                   "from ClickHouse directly (the same handlers); Ctrl-C quits.")
    add_source_args(p)
    p.add_argument("--window", type=float, default=60.0, help="statistics window in seconds (default 60)")
    p.add_argument("--interval", type=float, default=2.0, help="refresh period in seconds (default 2)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.set_defaults(func=run_top_cmd)


def run_report(args: argparse.Namespace) -> int:
    from vllm_otel_collector.views.data import parse_since
    from vllm_otel_collector.views.html import write_report

    now = time.time()
    since = parse_since(args.since, now)
    until = now if args.until is None else parse_since(args.until, now)
    if since >= until:
        raise UserError("--since must be before --until")
    store = open_store(args)
    try:
        path = write_report(store, args.out, since=since, until=until)
    finally:
        store.close()
    print(path)
    return 0


def run_top_cmd(args: argparse.Namespace) -> int:
    from vllm_otel_collector.views.top import run_top

    if args.window <= 0 or args.interval <= 0:
        raise UserError("--window and --interval must be positive")
    if not reads_store(args):
        return run_top(args.api or DEFAULT_API, window=args.window, interval=args.interval, once=args.once,
                       token=args.token)
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.plugins import enabled_plugins
    from vllm_otel_collector.views.top import StoreSource

    cfg = load_config(None)
    routes = {k: v for p in enabled_plugins(cfg) for k, v in p.create(cfg).routes.items()}
    store = open_store(args)
    try:
        return run_top("", window=args.window, interval=args.interval, once=args.once,
                       source=StoreSource(store, routes))
    finally:
        store.close()
