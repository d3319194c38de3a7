"""``vllm-otel migrate`` on the databases people have: empty; the contrib exporter's tables in each variant (sorting
key with and without Timestamp, Int64 Duration, JSON attributes, DateTime metric times with LowCardinality names);
renamed tables; a database an older vllm-otel migrated (data kept); a table it cannot serve (one-line refusal,
nothing changed); --dry-run (SQL printed, nothing changed); a second run (nothing applied)."""

from __future__ import annotations

import pytest

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.sync import stored_thresholds
from vllm_otel_collector.errors import UserError
from vllm_otel_collector.install import install
from vllm_otel_collector.store.migrations import load_migrations
from vllm_otel_collector.store.schema import JSON, MAP, Profile, recorded
from vllm_otel_inference.cli import main

from .contrib_exporter import create_exporter_tables, insert_traces, trace_rows
from .spans import request_body

DERIVED = {"llm_requests", "span_levels", "llm_requests_1m", "llm_requests_5m", "llm_requests_1h", "llm_startup_spans",
           "llm_model_loads", "llm_alerts", "llm_level_thresholds", "vllm_otel_settings", "vllm_otel_leases", "schema_migrations"}
VIEWS = {"llm_requests_mv", "span_levels_mv", "llm_startup_spans_mv", "llm_model_loads_mv", "llm_model_loads_live",
         "llm_model_loads_pending", "llm_requests_1m_mv", "llm_requests_5m_mv", "llm_requests_1h_mv"}


def tables(store) -> dict[str, str]:
    return dict(store.query("SELECT name, engine FROM system.tables WHERE database = {db:String}",
                            parameters={"db": store.database}).result_rows)


def columns(store, table: str) -> list[tuple[str, str]]:
    return store.query("SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                       "ORDER BY position", parameters={"db": store.database, "t": table}).result_rows


def every_version() -> list[int]:
    return [m.version for m in load_migrations()]


def test_an_empty_database_gets_contrib_tables_and_every_analytics_object(empty_store, make_config):
    report = install(empty_store, make_config(empty_store))
    found = tables(empty_store)
    contrib = {"otel_traces", "otel_traces_trace_id_ts", "otel_metrics_gauge", "otel_metrics_sum",
               "otel_metrics_histogram", "otel_metrics_exponential_histogram", "otel_metrics_summary"}
    assert contrib | DERIVED | VIEWS <= set(found)
    assert found["llm_requests_mv"] == found["llm_startup_spans_mv"] == "MaterializedView"
    assert found["llm_model_loads_live"] == "View"
    assert report.applied == every_version()
    assert [s.exists for s in report.shapes] == [False] * 6
    assert "otel_metrics_summary" in found  # the exporter inserts summaries there: a missing table fails its push
    assert recorded(empty_store) == Profile()
    defaults = AnalyticsConfig().levels
    assert stored_thresholds(empty_store) == [(e.span, e.metric, e.threshold_seconds) for e in defaults]
    again = install(empty_store, make_config(empty_store))
    assert again.applied == [] and set(tables(empty_store)) == set(found)


@pytest.mark.parametrize("variant,json_mode,time_type,metric_name", [
    ("current", False, "DateTime64(9)", "String"),
    ("no_timestamp_order", False, "DateTime64(9)", "String"),
    ("int64_duration", False, "DateTime64(9)", "LowCardinality(String)"),
    ("current", False, "DateTime", "LowCardinality(String)"),
    ("current", True, "DateTime64(9)", "String"),
])
def test_exporter_tables_of_every_variant_are_served_as_they_are(empty_store, make_config, variant, json_mode,
                                                                  time_type, metric_name):
    names = create_exporter_tables(empty_store, json_mode=json_mode, variant=variant, time_type=time_type,
                                   metric_name=metric_name)
    before = {t: columns(empty_store, t) for t in names.values()}
    report = install(empty_store, make_config(empty_store))
    assert all(s.exists for s in report.shapes)
    prof = recorded(empty_store)
    assert (prof.traces_attributes, prof.metrics_attributes) == ((JSON, JSON) if json_mode else (MAP, MAP))
    assert {t: columns(empty_store, t) for t in names.values()} == before  # their columns untouched
    insert_traces(empty_store, "otel_traces", trace_rows(request_body(), json_mode=json_mode))
    rows = empty_store.query("SELECT Model, Status, TTFT, E2E, OutputTokens, TTFTLevel FROM llm_requests "
                             "ORDER BY Model").result_rows
    assert rows == [("m-ok", "ok", 0.25, 1.5, 20, "EXCELLENT"), ("m-ok", "error", None, 2.0, 3, "NONE")]


def test_renamed_tables_are_served_and_recorded(empty_store, make_config):
    renamed = {"traces": "spans", "gauge": "m_gauge", "sum": "m_sum", "histogram": "m_hist",
               "exponential_histogram": "m_exp", "summary": "m_summary"}
    create_exporter_tables(empty_store, tables=renamed)
    install(empty_store, make_config(empty_store), tables=renamed)
    assert "otel_traces" not in tables(empty_store)
    prof = recorded(empty_store)
    assert (prof.traces, prof.gauge, prof.exponential_histogram) == ("spans", "m_gauge", "m_exp")
    insert_traces(empty_store, "spans", trace_rows(request_body()))
    assert empty_store.query("SELECT count() FROM llm_requests").result_rows == [(2,)]
    with pytest.raises(UserError, match="serves traces table 'spans'"):
        install(empty_store, make_config(empty_store))  # the defaults are other tables: one set per database


@pytest.mark.parametrize("ddl,reason", [
    ("CREATE TABLE otel_traces (Timestamp DateTime64(9), TraceId String, SpanId String, ParentSpanId String, "
     "SpanName String, ServiceName String, Duration UInt64, StatusCode String, ResourceAttributes "
     "Map(String, String), SpanAttributes Nested(keys String, values String)) ENGINE = MergeTree ORDER BY Timestamp",
     "traces table 'otel_traces' has no column 'SpanAttributes'"),
    ("CREATE TABLE otel_traces (Timestamp DateTime64(9), TraceId String, SpanId String, ParentSpanId String, "
     "SpanName String, ServiceName String, StatusCode String, ResourceAttributes Map(String, String), "
     "SpanAttributes Map(String, String)) ENGINE = MergeTree ORDER BY Timestamp",
     "has no column 'Duration'"),
    ("CREATE TABLE otel_traces (Timestamp DateTime64(9), TraceId String, SpanId String, ParentSpanId String, "
     "SpanName String, ServiceName String, Duration Float64, StatusCode String, "
     "ResourceAttributes Map(String, String), SpanAttributes Map(String, String)) ENGINE = MergeTree ORDER BY Timestamp",
     "column Duration is Float64"),
    ("CREATE VIEW otel_traces AS SELECT 1 AS x", "has engine View"),
    ("CREATE TABLE otel_metrics_gauge (x UInt8) ENGINE = MergeTree ORDER BY x", "metrics (gauge) table"),
])
def test_a_table_it_cannot_serve_is_refused_in_one_line_and_nothing_changes(empty_store, make_config, capsys, ddl,
                                                                            reason):
    empty_store.command(ddl)
    before = tables(empty_store)
    with pytest.raises(UserError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        install(empty_store, make_config(empty_store))
    assert tables(empty_store) == before
    from vllm_otel_collector.store.testing import shared_chdb_path

    code = main(["migrate", "--clickhouse", f"chdb://{shared_chdb_path()}", "--database", empty_store.database])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and reason.split("'")[0] in err
    assert tables(empty_store) == before


def test_the_newer_exporters_exp_histogram_name_is_found(empty_store, make_config):
    """Newer exporters default to otel_metrics_exp_histogram: when only that table exists, it is served."""
    create_exporter_tables(empty_store, tables={"exponential_histogram": "otel_metrics_exp_histogram"})
    install(empty_store, make_config(empty_store))
    assert recorded(empty_store).exponential_histogram == "otel_metrics_exp_histogram"
    assert "otel_metrics_exponential_histogram" not in tables(empty_store)


def test_dry_run_prints_the_sql_and_changes_nothing(empty_store, capsys):
    from vllm_otel_collector.store.testing import shared_chdb_path

    create_exporter_tables(empty_store, json_mode=True)
    before = tables(empty_store)
    assert main(["migrate", "--clickhouse", f"chdb://{shared_chdb_path()}", "--database", empty_store.database,
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("CREATE MATERIALIZED VIEW IF NOT EXISTS") >= 5
    assert f"`{empty_store.database}`.`otel_traces`" in out
    assert f"toString(SpanAttributes.`{sc.LATENCY_E2E}`)" in out  # rendered for the JSON table found
    assert "-- 0131_derive_requests (analytics)" in out
    assert tables(empty_store) == before


def _apply_old_schema(store) -> None:
    """What vllm-otel's collector had applied before issue 20: migrations 0001–0004 and 0100–0120."""
    for mig in load_migrations():
        if mig.version <= 4 or 100 <= mig.version <= 120:
            for stmt in mig.render(store.database, profile=Profile(), names=mig.names):
                store.command(stmt)
            store.insert("schema_migrations", {"version": [mig.version], "name": [mig.name],
                                               "checksum": [mig.checksum]})
        if mig.version == 1:
            store.command("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum "
                          "String, applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version")


def test_a_database_an_older_vllm_otel_migrated_is_upgraded_and_keeps_its_data(empty_store, make_config):
    import datetime as dt

    from .spans import load_body

    empty_store.command("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum "
                        "String, applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version")
    _apply_old_schema(empty_store)
    # what the old collector wrote: spans (a model load among them), its Python-derived rows, an assembled load
    insert_traces(empty_store, "otel_traces", trace_rows(load_body(trace="aa" * 16)))
    empty_store.insert("llm_requests", {"Timestamp": [10**18], "TraceId": ["t"], "SpanId": ["s"],
                                        "ServiceName": ["old"], "Model": ["m"], "Operation": ["chat"],
                                        "Status": ["ok"], "E2E": [1.0], "TTFTLevel": ["GOOD"]})
    empty_store.insert("llm_model_loads", {"Timestamp": [10**18], "TraceId": ["bb" * 16], "Model": ["old-model"],
                                           "LoadSeconds": [30.0], "AssembledAt": [dt.datetime(2024, 1, 1)]})
    report = install(empty_store, make_config(empty_store))
    assert report.applied == [v for v in every_version() if 4 < v < 100 or v > 120]
    assert empty_store.query("SELECT ServiceName, E2E FROM llm_requests").result_rows == [("old", 1.0)]
    # the load stored before the upgrade is found by the backfill; the old assembled row stays
    assert empty_store.query("SELECT uniqExact(TraceId) FROM llm_startup_spans").result_rows == [(1,)]
    from vllm_otel_collector.analytics.loads import assemble

    assert assemble(empty_store, now=4e9, settle_seconds=0, lookback_seconds=4e9) == 1
    assert sorted(empty_store.query("SELECT Model FROM llm_model_loads FINAL").result_rows) == [
        ("old-model",), ("tiny",)]
    insert_traces(empty_store, "otel_traces", trace_rows(request_body()))  # new spans: derived by the views
    assert empty_store.query("SELECT count() FROM llm_requests").result_rows == [(3,)]
