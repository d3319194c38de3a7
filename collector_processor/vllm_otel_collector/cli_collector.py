"""``vllm-otel collector``: run the collector until SIGTERM/SIGINT, then stop accepting, flush and exit 0 (1 when
the store stayed down past ``shutdown_timeout_s``: the rest stays in the spool for the next start).

``vllm-otel dead-letters``: list the requests set aside because ClickHouse can never store them; ``--replay`` puts
them back into the spool (collector stopped), ``--purge`` deletes them."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from vllm_otel_collector.errors import UserError


def register_collector(sub: argparse._SubParsersAction) -> None:
    """Add the ``collector`` subcommand to the root parser's ``sub``."""
    p = sub.add_parser(
        "collector", help="run the OTLP collector (gRPC 4317, HTTP 4318, read API 4319) storing into ClickHouse",
        description="Receive OTLP traces and metrics, spool them durably, write them to ClickHouse (embedded chDB "
                    "by default), forward to Jaeger, serve the read API. Flags override the YAML file and "
                    "VLLM_OTEL_COLLECTOR_* environment variables.")
    p.add_argument("--config", metavar="FILE", help="YAML config file")
    p.add_argument("--clickhouse", metavar="DSN",
                   help="chdb:///abs/path or http(s)://user:pass@host:8123/db (default chdb://<data dir>/clickhouse)")
    p.add_argument("--database", help="ClickHouse database (default otel)")
    p.add_argument("--listen", metavar="HOST:PORT", help="OTLP/gRPC address (default 127.0.0.1:4317)")
    p.add_argument("--http-listen", metavar="HOST:PORT", help="OTLP/HTTP address (default 127.0.0.1:4318; 'off')")
    p.add_argument("--api-listen", metavar="HOST:PORT", help="read API address (default 127.0.0.1:4319; 'off')")
    p.add_argument("--data-dir", metavar="DIR", help="spool and embedded store directory")
    p.add_argument("--forward", metavar="HOST:PORT", help="also forward traces over OTLP/gRPC (e.g. Jaeger)")
    p.add_argument("--tls-cert", metavar="PEM", help="TLS certificate for gRPC, HTTP and the read API")
    p.add_argument("--tls-key", metavar="PEM", help="TLS private key")
    p.add_argument("--no-analytics", action="store_true", help="raw OTLP storage only (no derived tables/alerts)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=run_collector)
    d = sub.add_parser(
        "dead-letters", help="list (or replay/purge) the requests the collector could never store",
        description="Requests whose rows ClickHouse refused for good (e.g. a violated constraint) are kept in "
                    "<data dir>/dead-letters with the reason instead of blocking the writer. --replay moves them "
                    "back into the spool (stop the collector first); the next start writes them again.")
    d.add_argument("--config", metavar="FILE", help="YAML config file (for data_dir)")
    d.add_argument("--data-dir", metavar="DIR", help="the collector's data directory")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--replay", action="store_true", help="move every dead letter back into the spool")
    g.add_argument("--purge", action="store_true", help="delete every dead letter")
    d.add_argument("--json", action="store_true", help="print the list as JSON")
    d.set_defaults(func=run_dead_letters)


def run_collector(args: argparse.Namespace) -> int:
    """Start, wait for a signal, stop. Returns 0 after a clean flush, 1 if data had to stay in the spool."""
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config

    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # grpc core's own bind-failure log line: we print one line
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # the driver logs each failed attempt; the collector reports failures itself
        logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    overrides = {
        "clickhouse": args.clickhouse, "database": args.database, "grpc_listen": args.listen,
        "http_listen": args.http_listen, "api_listen": args.api_listen, "data_dir": args.data_dir,
        "tls_cert": args.tls_cert, "tls_key": args.tls_key,
        "load_analytics": False if args.no_analytics else None,
    }
    cfg = load_config(args.config, **overrides)
    if args.forward:
        cfg.forward.endpoint = args.forward
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    collector = Collector(cfg).start()
    if not collector.wait_ready(30):
        collector.stop()
        raise UserError("collector not ready after 30 s (store unreachable or migrations failing)")
    print(f"vllm-otel collector: ready (gRPC {cfg.grpc_listen or 'off'}, HTTP {cfg.http_listen or 'off'}, "
          f"API {cfg.api_listen or 'off'})", flush=True)
    while not stop.wait(0.5):
        pass
    logging.getLogger(__name__).info("signal received: stopping (flushing the queue)")
    flushed = collector.stop()
    return 0 if flushed else 1


def run_dead_letters(args: argparse.Namespace) -> int:
    """List, replay or purge ``<data_dir>/dead-letters``. Raises ``UserError`` when the spool is locked."""
    import json
    import time
    from pathlib import Path

    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.pipeline.deadletters import DeadLetters
    from vllm_otel_collector.pipeline.spool import Spool

    cfg = load_config(args.config, data_dir=args.data_dir)
    letters = DeadLetters(Path(cfg.data_dir) / "dead-letters")
    found = letters.list()
    if args.replay or args.purge:
        if args.replay:
            spool = Spool(Path(cfg.data_dir) / "spool", max_bytes=cfg.spool.max_bytes, fsync=cfg.spool.fsync)
            try:
                n = letters.replay_into(spool)
            finally:
                spool.close()
            print(f"{n} dead letter(s) moved back into the spool; the next collector start writes them")
        else:
            for letter in found:
                letters.remove(letter)
            print(f"{len(found)} dead letter(s) deleted")
        return 0
    if args.json:
        print(json.dumps([{"seq": x.seq, "signal": x.signal, "bytes": x.size, "table": x.table, "error": x.error,
                           "time": x.time} for x in found]))
        return 0
    if not found:
        print(f"no dead letters in {letters.dir}")
        return 0
    for x in found:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(x.time))
        print(f"{x.seq:>8} {x.signal:<8} {x.size:>9} B  {when}Z  {x.table}: {x.error[:160]}")
    return 0
