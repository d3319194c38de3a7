"""Store and migration runner against real chDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.store import Store, load_migrations, migrate, redact_dsn, schema_is_current
from vllm_otel_collector.store.testing import fresh_store, shared_chdb_path


def test_migrations_create_exporter_tables_and_are_idempotent(store):
    tables = {r[0] for r in store.query("SHOW TABLES").result_rows}
    assert {"otel_traces", "otel_traces_trace_id_ts", "otel_traces_trace_id_ts_mv", "otel_metrics_gauge",
            "otel_metrics_sum", "otel_metrics_histogram", "otel_metrics_exponential_histogram",
            "schema_migrations"} <= tables
    assert migrate(store) == []
    assert schema_is_current(store)
    types = dict(store.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'otel_traces'",
        parameters={"db": store.database}).result_rows)
    assert types["Timestamp"] == "DateTime64(9)"
    assert types["SpanAttributes"] == "Map(LowCardinality(String), String)"
    assert types["Duration"] == "UInt64"
    assert types["Events.Timestamp"] == "Array(DateTime64(9))"
    assert types["Links.Attributes"] == "Array(Map(LowCardinality(String), String))"
    assert types["SpanKind"] == "LowCardinality(String)"


def test_insert_and_bound_parameters_and_lookup_view(store):
    store.insert("otel_traces", {
        "Timestamp": [1_700_000_000_123_456_789, 1_700_000_001_000_000_000],
        "TraceId": ["ab" * 16, "ab" * 16], "SpanId": ["01" * 8, "02" * 8], "SpanName": ["x", "y"],
        "SpanAttributes": [{"k": "v"}, {}], "Duration": [5, 7],
        "Events.Name": [["first_token"], []], "Events.Timestamp": [[1_700_000_000_200_000_000], []],
        "Events.Attributes": [[{"a": "1"}], []],
    })
    rows = store.query("SELECT toUnixTimestamp64Nano(Timestamp), SpanAttributes['k'], Events.Name FROM otel_traces "
                       "WHERE SpanName = {n:String}", parameters={"n": "x"}).result_rows
    assert rows == [(1_700_000_000_123_456_789, "v", ["first_token"])]
    # A would-be injection is just a value.
    assert store.query("SELECT count() FROM otel_traces WHERE SpanName = {n:String}",
                       parameters={"n": "x' OR 1=1 --"}).result_rows == [(0,)]
    lookup = store.query("SELECT TraceId, min(Start), max(End) FROM otel_traces_trace_id_ts GROUP BY TraceId").result_rows
    assert len(lookup) == 1 and lookup[0][0] == "ab" * 16
    assert lookup[0][1].timestamp() == 1_700_000_000 and lookup[0][2].timestamp() == 1_700_000_001


def test_two_stores_on_one_path_are_isolated_by_database(store):
    other = fresh_store("col_other")
    try:
        other.insert("otel_traces", {"TraceId": ["cd" * 16], "SpanName": ["only-here"]})
        assert store.query("SELECT count() FROM otel_traces").result_rows == [(0,)]
        assert other.query("SELECT count() FROM otel_traces").result_rows == [(1,)]
        assert store.query("SELECT currentDatabase()").result_rows == [(store.database,)]
    finally:
        other.command(f"DROP DATABASE `{other.database}`", use_database=False)


def test_newer_schema_is_refused(store):
    latest = max(m.version for m in load_migrations())
    store.insert("schema_migrations", {"version": [latest + 1000], "name": ["from_the_future"], "checksum": [""]})
    with pytest.raises(UserError, match=r"newer than this collector knows"):
        migrate(store)


def test_cluster_rendering_produces_replicated_on_cluster_sql():
    mig = load_migrations()[0]
    stmts = mig.render("otel", cluster="prod", ttl_days=3)
    assert "ON CLUSTER `prod`" in stmts[0] and "ReplicatedMergeTree()" in stmts[0]
    assert "TTL toDateTime(Timestamp) + toIntervalDay(3)" in stmts[0]
    assert all("${" not in s for s in mig.render("otel"))


def test_bad_dsn_and_redaction(tmp_path: Path):
    with pytest.raises(UserError, match="unsupported ClickHouse DSN"):
        Store("mysql://u:secret@h/db")
    with pytest.raises(UserError, match="absolute path"):
        Store("chdb://relative/path")
    assert redact_dsn("http://u:secret@h:8123/db") == "http://u:***@h:8123/db"
    with pytest.raises(UserError) as info:
        Store("http://u:secret@127.0.0.1:1/otel", connect_timeout_s=1)
    assert "secret" not in str(info.value) and "127.0.0.1" in str(info.value)
    with pytest.raises(UserError, match="invalid ClickHouse database name"):
        Store(f"chdb://{shared_chdb_path()}", database="x;DROP")
