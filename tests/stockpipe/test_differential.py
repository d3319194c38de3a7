"""One dataset of OTLP requests stored two ways — through our collector, and the way the contrib clickhouseexporter
inserts it (Map mode, JSON mode, and the pre-2024 spellings on the older table variants) into exporter-created tables
that `vllm-otel migrate` set up — gives the same derived rows, row by row: llm_requests, span_levels, rollups with
their histogram maps, engine-start spans, model loads; and the same answers from stats, alert rules, the read API
routes, the report's data and every Grafana panel."""

from __future__ import annotations

import math
import os
import re

import pytest

from vllm_otel_collector.analytics.alerts import AlertManager
from vllm_otel_collector.analytics.api import make_routes
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.engine import engine_route
from vllm_otel_collector.analytics.loads import assemble
from vllm_otel_collector.analytics.startup import startup_route
from vllm_otel_collector.install import install
from vllm_otel_collector.views import grafana
from vllm_otel_collector.views.data import collect

from . import contrib_exporter as X
from .dataset import hold_baselines, metric_bodies, now_s, through_our_collector, through_the_exporter, trace_bodies

SNAPSHOTS = {
    "llm_requests": "SELECT * FROM llm_requests ORDER BY SpanId",
    "span_levels": "SELECT * FROM span_levels ORDER BY SpanId",
    "llm_requests_1m": "SELECT * FROM llm_requests_1m FINAL ORDER BY ServiceName, Model, Operation, Bucket",
    "llm_requests_5m": "SELECT * FROM llm_requests_5m FINAL ORDER BY ServiceName, Model, Operation, Bucket",
    "llm_requests_1h": "SELECT * FROM llm_requests_1h FINAL ORDER BY ServiceName, Model, Operation, Bucket",
    "llm_startup_spans": "SELECT * FROM llm_startup_spans FINAL ORDER BY TraceId, SpanId",
    "llm_model_loads": "SELECT * EXCEPT AssembledAt FROM llm_model_loads FINAL ORDER BY TraceId",
}
VARIANTS = {"map": dict(json_mode=False), "json": dict(json_mode=True),
            "legacy": dict(json_mode=False, spellings="legacy", variant="int64_duration", time_type="DateTime64(9)")}


def same(a, b) -> bool:
    """Equal, floats within 1e-9 relative (a rollup's Float64 sums depend on the order parts were merged in)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def _short(row) -> str:
    return repr(row) if len(repr(row)) < 600 else repr(row)[:300] + " … " + repr(row)[-250:]


def assert_same(name: str, ours, theirs) -> None:
    assert len(ours) == len(theirs), f"{name}: {len(ours)} rows vs {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if not same(a, b):
            diff = [k for k, (x, y) in enumerate(zip(a, b)) if not same(x, y)] if isinstance(a, tuple) else "?"
            pytest.fail(f"{name} row {i} differs in columns {diff}:\n ours   {_short(a)}\n theirs {_short(b)}")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """``(now, {"ours": store, "map": store, "json": store, "legacy": store})``, all filled with one dataset."""
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.store import Store
    from vllm_otel_collector.store.testing import drop_store, fresh_store, shared_chdb_path

    now = now_s() // 60 * 60
    traces, metrics = trace_bodies(now), metric_bodies(now)
    cfg = load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=f"sp_diff_{os.getpid()}",
                      data_dir=tmp_path_factory.mktemp("ours"), grpc_listen="127.0.0.1:0", http_listen="off",
                      api_listen="off", spool={"fsync": False}, flush_interval_s=0.2,
                      analytics={"evaluation_interval_seconds": 86400})
    ours = Collector(cfg).start()
    assert ours.wait_ready(60)
    hold_baselines(ours.store)
    through_our_collector(ours, traces, metrics)
    out = {"ours": ours.store}
    made = []
    for name, opts in VARIANTS.items():
        store = fresh_store(f"sp_{name}", apply_migrations=False)
        made.append(store)
        X.create_exporter_tables(store, json_mode=opts["json_mode"], variant=opts.get("variant", "current"),
                                 time_type=opts.get("time_type", "DateTime64(9)"))
        install(store, load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=store.database))
        hold_baselines(store)
        through_the_exporter(store, traces, metrics, json_mode=opts["json_mode"],
                             spellings=opts.get("spellings", "current"))
        out[name] = store
    for store in out.values():  # ClickHouse's own 30 s refresh may have assembled them already: either way, two rows
        assemble(store, now + 3600, settle_seconds=0, lookback_seconds=86400)
        assert store.query("SELECT count() FROM llm_model_loads FINAL").result_rows == [(2,)]
    yield now, out
    ours.stop()
    Store(cfg.dsn, database=cfg.database).command(f"DROP DATABASE IF EXISTS `{cfg.database}`", use_database=False)
    for s in made:
        drop_store(s)


def rows(store, sql: str) -> list[tuple]:
    return store.query(sql).result_rows


def test_the_dataset_is_all_there(stores):
    now, s = stores
    counts = rows(s["ours"], "SELECT (SELECT count() FROM llm_requests), (SELECT count() FROM span_levels), "
                             "(SELECT count() FROM llm_model_loads FINAL), (SELECT count() FROM llm_startup_spans FINAL)")
    assert counts == [(150 + 5 + 12, 12, 2, 8)]  # SDK requests + native + hostile; voice spans; loads; their spans


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("table", list(SNAPSHOTS))
def test_derived_tables_are_identical_row_by_row(stores, variant, table):
    _, s = stores
    assert_same(f"{table} ({variant})", rows(s["ours"], SNAPSHOTS[table]), rows(s[variant], SNAPSHOTS[table]))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_stats_routes_and_the_report_agree(stores, variant):
    now, s = stores
    routes = make_routes(default_window=300, sla_seconds=2.0, clock=lambda: now)
    since, until = str(now - 6000), str(now + 60)
    queries = [("/api/v1/stats", {"since": since, "until": until}),
               ("/api/v1/stats", {"mode": "history", "since": since, "until": until}),
               ("/api/v1/stats", {"mode": "history", "step": "3600", "since": since, "until": until}),
               ("/api/v1/stats", {"mode": "aggregated", "since": since, "until": until}),
               ("/api/v1/requests", {"since": since, "until": until, "limit": "1000"}),
               ("/api/v1/model_loads", {"since": "0"}),
               ("/api/v1/alerts", {"state": "all"})]
    for route, query in queries:
        a, b = routes[route](s["ours"], query), routes[route](s[variant], query)
        assert same(a, b), (route, query)
    for route in (engine_route, startup_route):
        assert same(route(s["ours"], {"window": "7200"}), route(s[variant], {"window": "7200"}))
    mine, theirs = collect(s["ours"], now - 6000, now + 60), collect(s[variant], now - 6000, now + 60)
    assert mine.requests and same(vars(mine), vars(theirs))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_alert_rules_observe_the_same(stores, variant):
    now, s = stores
    manager = AlertManager(AnalyticsConfig())
    ours, _ = manager.observe(s["ours"], now)
    theirs, failed = manager.observe(s[variant], now)
    assert not failed
    key = lambda o: (o.rule, o.fingerprint)  # noqa: E731
    assert any(o.firing and o.rule == "ProcessMemoryHigh" for o in ours)  # the metrics tables are read too
    assert any(o.rule == "CompileCacheMiss" for o in ours)  # ...and the model loads
    assert_same("observations", [(o.rule, o.fingerprint, o.firing, o.value) for o in sorted(ours, key=key)],
                [(o.rule, o.fingerprint, o.firing, o.value) for o in sorted(theirs, key=key)])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_grafana_panel_gives_the_same_result(stores, variant):
    now, s = stores
    ours_board = grafana.PANELS
    theirs_board = grafana.panels_for(grafana.profile_of(s[variant]))
    assert [p.title for p in theirs_board] == [p.title for p in ours_board]
    for mine, theirs in zip(ours_board, theirs_board):
        for interval in (60, 3600):
            args = (now - 6000, now + 60, interval, {"model": grafana.ALL, "trace_id": "a1" * 16})
            a = rows(s["ours"], grafana.expand_macros(mine.sql, *args))
            b = rows(s[variant], grafana.expand_macros(theirs.sql, *args))
            assert_same(f"panel {mine.title!r} @{interval}s ({variant})", a, b)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_top_shows_the_same_frame_from_either_database(stores, variant, capsys, monkeypatch):
    """``vllm-otel top --clickhouse … --once`` on a database no collector serves prints what it prints for ours."""
    monkeypatch.setenv("COLUMNS", "200")
    from vllm_otel_collector.store.testing import shared_chdb_path
    from vllm_otel_inference.cli import main

    _, s = stores
    frames = []
    for name in ("ours", variant):
        assert main(["top", "--clickhouse", f"chdb://{shared_chdb_path()}", "--database", s[name].database,
                     "--window", "7200", "--once"]) == 0
        frames.append(re.sub(r"\d\d:\d\d:\d\d", "hh:mm:ss", capsys.readouterr().out))  # the refresh time
    assert "SmolLM2-135M-Instruct" in frames[0] and "vllm-agent" not in frames[0], frames[0]
    assert frames[0] == frames[1], "\n".join(__import__("difflib").unified_diff(frames[0].splitlines(),
                                                                              frames[1].splitlines(), lineterm=""))
