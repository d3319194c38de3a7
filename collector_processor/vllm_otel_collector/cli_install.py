"""``vllm-otel migrate`` (install the analytics onto a database any pipeline fills) and ``vllm-otel analyzer`` (the
periodic jobs ClickHouse cannot run: alerts with webhooks, retention), for the stock-pipeline path
(docs/scale-out.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from vllm_otel_collector.store.schema import DEFAULT_TABLES

_TABLE_FLAGS = (("traces", "traces-table"), ("gauge", "gauge-table"), ("sum", "sum-table"),
                ("histogram", "histogram-table"), ("exponential_histogram", "exp-histogram-table"),
                ("summary", "summary-table"))


def _store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config (the collector's; its analytics: section is used)")
    p.add_argument("--clickhouse", metavar="DSN", required=True,
                   help="http(s)://user:pass@host:8123[/db] (a server) or chdb:///abs/path (embedded)")
    p.add_argument("--database", help="ClickHouse database the exporter writes (default otel)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``migrate`` and ``analyzer`` to the root parser's ``sub``."""
    m = sub.add_parser(
        "migrate", help="install the vllm-otel analytics onto a ClickHouse database (stock Collector pipelines too)",
        description="Inspect the contrib clickhouseexporter's tables (creating those that are missing), install the "
                    "analytics objects onto them (materialized views deriving llm_requests, span_levels, engine "
                    "starts and rollups; model loads assembled by a refreshable view), record the schema, write the "
                    "level thresholds and retention of the analytics config. Idempotent; versioned in "
                    "schema_migrations. A table it cannot serve is refused with a one-line reason (exit 2) before "
                    "anything changes.")
    _store_flags(m)
    for kind, flag in _TABLE_FLAGS:
        m.add_argument(f"--{flag}", metavar="NAME", dest=f"table_{kind}",
                       help=f"the exporter's {kind.replace('_', ' ')} table (default "
                            f"{DEFAULT_TABLES[kind]}" + (", or otel_metrics_exp_histogram when only that exists)"
                                                         if kind == "exponential_histogram" else ")"))
    m.add_argument("--attributes", choices=["map", "json"],
                   help="assert the exporter's attribute mode (json: true → json); read from the tables otherwise")
    m.add_argument("--cluster", metavar="NAME", help="run the DDL ON CLUSTER NAME with Replicated engines")
    m.add_argument("--ttl-days", type=int, default=None, metavar="N", help="TTL of tables it creates (default none)")
    m.add_argument("--dry-run", action="store_true", help="print the SQL it would run; change nothing")
    m.set_defaults(func=run_migrate)
    a = sub.add_parser(
        "analyzer", help="run alert evaluation (webhooks) and retention for a database filled by any pipeline",
        description="The collector's periodic jobs without receivers: alert rules over the rollups (transitions in "
                    "llm_alerts, Alertmanager webhooks) and per-table retention. Safe to run as several replicas: "
                    "one holds a lease row in ClickHouse, the others stand by. Needs `vllm-otel migrate` first. "
                    "Stops on SIGTERM/SIGINT.")
    _store_flags(a)
    a.add_argument("--lease-ttl", type=float, default=30.0, metavar="S",
                   help="seconds without renewal before a standby takes over (default 30)")
    a.set_defaults(func=run_analyzer)


def _config(args: argparse.Namespace, **extra):
    from vllm_otel_collector.config import load_config

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":
        logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)
    return load_config(args.config, clickhouse=args.clickhouse, database=args.database, **extra)


def run_migrate(args: argparse.Namespace) -> int:
    """Install; print what was found and done (or the SQL with ``--dry-run``). Exit 0, or 2 on a refusal."""
    from vllm_otel_collector.install import install
    from vllm_otel_collector.store import Store, redact_dsn

    cfg = _config(args, cluster=args.cluster, ttl_days=args.ttl_days)
    tables = {kind: getattr(args, f"table_{kind}") for kind, _ in _TABLE_FLAGS if getattr(args, f"table_{kind}")}
    store = Store(cfg.store.dsn.get_secret_value(), database=cfg.store.database)
    try:
        report = install(store, cfg, tables=tables, attributes=args.attributes, cluster=cfg.store.cluster,
                         ttl_days=cfg.store.ttl_days, dry_run=args.dry_run)
    finally:
        store.close()
    if args.dry_run:
        for stmt in report.statements:
            print(stmt if stmt.startswith("--") else stmt + ";")
        return 0
    prof = report.profile
    print(f"vllm-otel migrate: {redact_dsn(cfg.dsn)} database {cfg.database}")
    for shape in report.shapes:
        state = f"found ({shape.engine}, {shape.mode or 'no'} attributes)" if shape.exists else "created"
        print(f"  {shape.name}: {state}")
    print(f"  traces attributes: {prof.traces_attributes}; metrics attributes: {prof.metrics_attributes}")
    print(f"  migrations applied: {', '.join(f'{v:04d}' for v in report.applied) or 'none (up to date)'}")
    return 0


def run_analyzer(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; release the lease on the way out. Exit 0."""
    from vllm_otel_collector.analyzer import Analyzer

    cfg = _config(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    analyzer = Analyzer(cfg, lease_ttl_s=args.lease_ttl).start()
    print(f"vllm-otel analyzer: running (database {cfg.database}, lease holder {analyzer.lease.holder})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        analyzer.stop()
    return 0
