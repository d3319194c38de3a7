"""Log-scale histogram rollups (issue 15): bucket math in Python = in ClickHouse, quantiles within the documented
relative error of the exact raw quantiles on skewed data, rollup counts = raw counts, and migration 0105 on data
written by the old (t-digest) schema."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vllm_otel_collector.analytics import histogram as H
from vllm_otel_collector.analytics.stats import _percentile, history, rollup_window

T0 = 1_800_000_000  # divisible by 3600
LEVELS = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)


def _within(est: float, exact: float) -> bool:
    return abs(est - exact) <= H.RELATIVE_ERROR * abs(exact) * (1 + 1e-9) + 1e-300


def test_constants_are_the_documented_ones():
    assert H.SCALE == 5 and H.GAMMA == 2 ** (1 / 32)
    assert H.RELATIVE_ERROR == pytest.approx(0.010830, abs=1e-6)
    # every value in a bucket is within RELATIVE_ERROR of its representative, at both ends
    for k in (-300, -1, 0, 1, 77):
        lo, hi, rep = H.lower_bound(k), H.upper_bound(k), H.representative(k)
        assert (rep - lo) / lo == pytest.approx(H.RELATIVE_ERROR) and (hi - rep) / hi == pytest.approx(H.RELATIVE_ERROR)


@pytest.mark.parametrize("value, key", [
    (1.0, -1), (2.0, 31), (0.5, -33), (1.0000001, 0), (0.0, H.ZERO_KEY), (-0.0, H.ZERO_KEY), (-3.5, H.ZERO_KEY),
    (math.nan, H.ZERO_KEY), (math.inf, H.MAX_KEY), (1e308, H.MAX_KEY), (2.0 ** 1000, 31999), (2.0 ** -1000, -32001 + 1),
    (5e-324, H.MIN_KEY), (2.0 ** -999, -31969), (3.4028234663852886e38, 4095), (1.401298464324817e-45, -4769),
])
def test_bucket_index_boundaries(value, key):
    assert H.bucket_index(value) == key
    if key not in (H.ZERO_KEY, H.MAX_KEY, H.MIN_KEY):
        assert H.lower_bound(key) < value <= H.upper_bound(key) * (1 + 1e-15)


def test_bucket_index_python_equals_clickhouse(store):
    values = [1.0, 2.0, 0.5, 1.0000001, 0.0, -3.5, 1e308, 5e-324, 2.0 ** -999, 2.0 ** 1000, 3.4028234663852886e38,
              1.401298464324817e-45, 1e-6, 0.15, 123.456, 7e3]
    sql = (f"SELECT groupArray({H.key_sql('v')}) FROM (SELECT arrayJoin({{vals:Array(Float64)}}) AS v)")
    got = store.query(sql, parameters={"vals": values}).result_rows[0][0]
    assert got == [H.bucket_index(v) for v in values]
    # NaN, +Inf, and the same values stored as Float32 (the raw table's type), then widened like the views do
    specials = store.query(f"SELECT {H.key_sql('nan')}, {H.key_sql('inf')}, {H.key_sql('-inf')}").result_rows[0]
    assert list(specials) == [H.ZERO_KEY, H.MAX_KEY, H.ZERO_KEY]
    f32 = store.query(f"SELECT groupArray({H.key_sql('v')}), groupArray(toFloat64(v)) FROM "
                      "(SELECT toFloat32(arrayJoin({vals:Array(Float64)})) AS v)",
                      parameters={"vals": [0.15, 2.0, 1e-6, 0.0]}).result_rows[0]
    assert f32[0] == [H.bucket_index(v) for v in f32[1]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-30, max_value=1e30, allow_nan=False), min_size=1, max_size=200),
       st.floats(min_value=0.0, max_value=1.0))
def test_quantile_within_relative_error_of_exact(values, q):
    exact = _percentile(sorted(values), q)
    est = H.quantile(H.counts_of(values), q)
    assert _within(est, exact), (est, exact)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False), min_size=1, max_size=100),
       st.integers(min_value=1, max_value=5))
def test_downscale_equals_indexing_at_the_lower_scale(values, shift):
    assert H.downscale(H.counts_of(values), shift) == H.counts_of(values, H.SCALE - shift)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.floats(min_value=0.0, max_value=1e6), st.none()), min_size=1, max_size=80),
       st.integers(min_value=1, max_value=5))
def test_downscale_in_sql_equals_python(module_store, values, shift):
    sql = (f"SELECT groupArray(({H.heatmap_key_sql('k', shift)}, c)) FROM (SELECT k, c FROM (SELECT "
           f"{H.state_sql('v')} AS h FROM (SELECT arrayJoin({{vals:Array(Nullable(Float64))}}) AS v)) "
           "ARRAY JOIN mapKeys(h) AS k, mapValues(h) AS c)")
    pairs = module_store.query(sql, parameters={"vals": values}).result_rows[0][0]
    acc: dict[int, int] = {}
    for k, c in pairs:
        acc[k] = acc.get(k, 0) + c
    assert acc == H.downscale(H.counts_of(values), shift)


def test_quantile_edge_cases():
    assert H.quantile({}, 0.5) is None
    assert H.quantile({H.ZERO_KEY: 3}, 0.99) == 0.0
    assert H.quantile({10: 1}, 0.0) == H.quantile({10: 1}, 1.0) == H.representative(10)
    for bad in (-0.01, 1.01, math.nan):
        with pytest.raises(ValueError, match="quantile level must be in"):
            H.quantile({1: 1}, bad)


# ---- skewed data through the real rollups ----------------------------------------------------------------------------
def _skewed(kind: str, n: int, rnd: random.Random) -> list[float]:
    if kind == "lognormal":
        return [rnd.lognormvariate(-1.9, 0.6) for _ in range(n)]
    if kind == "bimodal":  # cache hits vs misses: 90 % fast, 10 % ten times slower
        return [rnd.lognormvariate(-2.5, 0.2) if rnd.random() < 0.9 else rnd.lognormvariate(0.0, 0.3) for _ in range(n)]
    return [rnd.paretovariate(1.1) * 0.01 for _ in range(n)]  # long tail: Pareto α = 1.1, p99/p50 ≈ 50×


def _insert(store, rows: list[dict]) -> None:
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    store.insert("llm_requests", cols)


def _rows(values: list[float], model: str, t0: float, span_s: float, rnd: random.Random) -> list[dict]:
    out = []
    for i, v in enumerate(values):
        nulls = rnd.random() < 0.05  # some requests without a TPOT / phases (e.g. a single output token)
        out.append({"Timestamp": int((t0 + span_s * i / len(values)) * 1e9), "TraceId": f"{i:032x}",
                    "SpanId": f"{i:016x}", "ServiceName": "svc", "Model": model, "Operation": "chat", "Status": "ok",
                    "TTFT": v, "TPOT": None if nulls else v / 40, "E2E": v * 3, "Queue": 0.0 if i % 7 == 0 else v / 5,
                    "Prefill": None if nulls else v * 0.8, "Decode": v * 2, "TokensPerSecond": 100.0 / (v + 0.01),
                    "InputTokens": 10, "OutputTokens": 20})
    return out


@pytest.mark.parametrize("kind", ["lognormal", "bimodal", "long_tail"])
@pytest.mark.parametrize("table", ["llm_requests_1m", "llm_requests_5m", "llm_requests_1h"])
def test_rollup_quantiles_within_relative_error_on_skewed_data(store, kind, table):
    rnd = random.Random(hash((kind, table)) & 0xFFFF)
    values = _skewed(kind, 3000, rnd)
    rows = _rows(values, "m1", T0, 7200, rnd)
    for part in (rows[:1000], rows[1000:2200], rows[2200:]):  # several parts per bucket: the merge path
        _insert(store, part)
    m = rollup_window(store, T0, T0 + 7200, table=table)[("svc", "m1")]
    raw = store.query("SELECT TTFT, TPOT, E2E, Queue, Prefill, Decode, TokensPerSecond FROM llm_requests").result_rows
    for j, name in enumerate(H.METRICS):
        key = "tokens_per_second" if name == "TokensPerSecond" else name.lower()
        vals = sorted(float(r[j]) for r in raw if r[j] is not None)
        assert m[f"{key}_count"] == len(vals)
        for q in (0.5, 0.9, 0.95, 0.99):
            est, exact = m[f"{key}_p{round(q * 100)}"], _percentile(vals, q)
            assert _within(est, exact), (name, q, est, exact)
    # the per-minute series agrees with the same definition per bucket
    if table == "llm_requests_1m":
        points = history(store, T0, T0 + 600, step_seconds=60)
        assert len(points) == 10
        for p in points:
            vals = sorted(float(r[0]) for r in store.query(
                "SELECT TTFT FROM llm_requests WHERE toStartOfMinute(Timestamp) = toDateTime({b:UInt32})",
                parameters={"b": p["bucket"]}).result_rows)
            assert p["ttft_count"] == len(vals) and _within(p["ttft_p95"], _percentile(vals, 0.95))


def test_migration_views_and_backfill_use_the_module_bucket_sql():
    from vllm_otel_collector.store.migrations import load_migrations

    text = next(m for m in load_migrations() if m.version == 105).template
    for name in H.METRICS:  # 2 views + 2 backfills, each with the exact expression of histogram.state_sql
        assert text.count(f"{H.state_sql(name)} AS {name}Hist") == 4, name
    assert "quantilesTDigest" not in text.split("DROP COLUMN")[0]
    m135 = next(m for m in load_migrations() if m.version == 135)  # the 5-minute level: view + backfill
    text = "\n".join(m135.render("otel", names=m135.names))
    for name in H.METRICS:
        assert text.count(f"{H.state_sql(name)} AS {name}Hist") == 2, name


def test_histogram_counts_equal_raw_counts_per_bucket(store):
    rnd = random.Random(3)
    _insert(store, _rows(_skewed("bimodal", 1500, rnd), "m1", T0, 1800, rnd))
    _insert(store, _rows(_skewed("long_tail", 500, rnd), "m2", T0, 1800, rnd))
    # Float32 extremes and the values the zero / top buckets take (the raw column is Float32)
    extremes = _rows([1.401298464324817e-45, 1e37, 0.0, math.inf, 1e-30, 5e4], "m2", T0, 60, rnd)
    _insert(store, extremes)
    for table, unit in (("llm_requests_1m", "Minute"), ("llm_requests_5m", "FiveMinutes"),
                        ("llm_requests_1h", "Hour")):
        hist_cols = ", ".join(f"sumMap({m}Hist), sum({m}Count)" for m in H.METRICS)
        roll = store.query(f"SELECT toUnixTimestamp(Bucket), Model, {hist_cols} FROM {table} "
                           "GROUP BY Bucket, Model ORDER BY Bucket, Model").result_rows
        assert roll
        for b, model, *pairs in roll:
            raw = store.query(
                f"SELECT {', '.join(H.METRICS)} FROM llm_requests WHERE Model = {{m:String}} "
                f"AND toStartOf{unit}(Timestamp) = toDateTime({{b:UInt32}})", parameters={"m": model, "b": b}
            ).result_rows
            for j, name in enumerate(H.METRICS):
                hist, count = pairs[2 * j], pairs[2 * j + 1]
                expected = H.counts_of(float(r[j]) if r[j] is not None else None for r in raw)
                assert dict(hist) == expected, (table, b, model, name)
                assert sum(hist.values()) == count == sum(1 for r in raw if r[j] is not None)


def test_empty_window_has_no_quantiles(store):
    assert rollup_window(store, T0, T0 + 60) == {}
    rows = _rows([0.1] * 3, "m1", T0, 10, random.Random(1))
    for r in rows:
        r["TPOT"] = None
    _insert(store, rows)
    m = rollup_window(store, T0, T0 + 60)[("svc", "m1")]
    assert m["tpot_count"] == 0 and m["tpot_p50"] is None and m["tpot_p99"] is None
    assert m["ttft_p50"] == pytest.approx(H.representative(H.bucket_index(0.1)), rel=1e-6)


# ---- migration 0105 on data written by the old schema -----------------------------------------------------------------
@pytest.mark.chdb
def test_migration_0105_moves_tables_written_by_the_old_schema():
    from vllm_otel_collector.store.migrations import applied_versions, migrate
    from vllm_otel_collector.store.testing import fresh_store

    old = fresh_store("hmig", apply_migrations=False)
    try:
        migrate(old, max_version=104)
        assert 105 not in applied_versions(old)
        cols = {r[0] for r in old.query("SELECT name FROM system.columns WHERE database = currentDatabase() "
                                         "AND table = 'llm_requests_1m'").result_rows}
        assert "TTFTQuantiles" in cols and "TTFTHist" not in cols
        rnd = random.Random(5)
        before_rows = _rows(_skewed("lognormal", 1200, rnd), "m1", T0, 3600, rnd)
        _insert(old, before_rows[:600])
        _insert(old, before_rows[600:])
        old_counts = old.query("SELECT sum(Requests), sum(TTFTCount), sum(TTFTSum), max(TTFTMax) "
                               "FROM llm_requests_1m").result_rows[0]

        assert 105 in migrate(old)  # (and any later analytics migrations)
        cols = {r[0] for r in old.query("SELECT name FROM system.columns WHERE database = currentDatabase() "
                                         "AND table = 'llm_requests_1h'").result_rows}
        assert {f"{m}Hist" for m in H.METRICS} <= cols and not any(c.endswith("Quantiles") for c in cols)
        # counts and sums of the old rows unchanged by the backfill rows
        assert old.query("SELECT sum(Requests), sum(TTFTCount), sum(TTFTSum), max(TTFTMax) "
                         "FROM llm_requests_1m").result_rows[0] == old_counts
        # new rows after the migration go through the re-created views
        after_rows = _rows(_skewed("bimodal", 800, rnd), "m1", T0 + 3600, 3600, rnd)
        _insert(old, after_rows)
        # an interrupted migration re-runs every statement: the backfill must not count the old rows twice, however
        # the re-run's INSERT ... SELECT splits its output into blocks (small blocks here: a deduplication token, which
        # names blocks by position, let the second block of a re-run through -- CI saw it 1 run in 7)
        mig = next(m for m in _all_migrations() if m.version == 105)
        stmts = mig.render(old.database)
        for s in stmts:
            if s.lstrip().upper().startswith("INSERT"):
                old.command(s.rstrip().rstrip(";") + " SETTINGS max_block_size = 7, max_insert_block_size = 7, "
                            "min_insert_block_size_rows = 7, min_insert_block_size_bytes = 0")
        for table in ("llm_requests_1m", "llm_requests_1h"):
            got = old.query(f"SELECT sum(Requests), sum(TTFTCount), sumMap(TTFTHist), sumMap(TokensPerSecondHist) "
                            f"FROM {table}").result_rows[0]
            allv = before_rows + after_rows
            assert got[0] == got[1] == 2000
            assert dict(got[2]) == H.counts_of(r["TTFT"] for r in _f32(allv, "TTFT"))
            assert dict(got[3]) == H.counts_of(r["TokensPerSecond"] for r in _f32(allv, "TokensPerSecond"))
        m = rollup_window(old, T0, T0 + 7200, table="llm_requests_1h")[("svc", "m1")]
        exact = sorted(float(r[0]) for r in old.query("SELECT TTFT FROM llm_requests").result_rows)
        assert _within(m["ttft_p99"], _percentile(exact, 0.99))
        assert migrate(old) == []  # recorded once
    finally:
        old.command(f"DROP DATABASE IF EXISTS `{old.database}`", use_database=False)
        old.close()


def _f32(rows: list[dict], col: str) -> list[dict]:
    import struct

    return [{col: struct.unpack("f", struct.pack("f", r[col]))[0]} for r in rows]


def _all_migrations():
    from vllm_otel_collector.store.migrations import load_migrations

    return load_migrations()


# ---- migration 0135 (the 5-minute level) on data written before it ---------------------------------------------------
def _five_minute_view_of(store, table: str) -> list[tuple]:
    """Every column of ``table`` merged per 5-minute bucket and key (floats rounded: summation order differs)."""
    cols = [r for r in store.query("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                                   "AND table = 'llm_requests_5m' ORDER BY position").result_rows
            if r[0] not in ("Bucket", "ServiceName", "Model", "Operation")]
    agg = []
    for name, typ in cols:
        if "sumMap" in typ:
            agg.append(f"sumMap({name})")
        elif "max" in typ:
            agg.append(f"max({name})")
        elif "Float" in typ:
            agg.append(f"round(sum({name}), 6)")
        else:
            agg.append(f"sum({name})")
    return store.query(f"SELECT toStartOfFiveMinutes(Bucket) AS b, ServiceName, Model, Operation, {', '.join(agg)} "
                       f"FROM {table} GROUP BY b, ServiceName, Model, Operation "
                       "ORDER BY b, ServiceName, Model, Operation").result_rows


@pytest.mark.chdb
def test_migration_0135_backfills_the_five_minute_rollup_once():
    from vllm_otel_collector.store.migrations import applied_versions, migrate
    from vllm_otel_collector.store.testing import fresh_store

    old = fresh_store("m5mig", apply_migrations=False)
    try:
        migrate(old, max_version=134)
        assert 135 not in applied_versions(old)
        rnd = random.Random(7)
        before_rows = _rows(_skewed("lognormal", 900, rnd), "m1", T0, 3600, rnd)
        before_rows += _rows(_skewed("bimodal", 300, rnd), "m2", T0 + 120, 1800, rnd)
        _insert(old, before_rows[:500])  # several parts per bucket
        _insert(old, before_rows[500:])

        assert 135 in migrate(old)
        assert old.query("SELECT sum(Requests) FROM llm_requests_5m").result_rows[0][0] == 1200
        assert _five_minute_view_of(old, "llm_requests_5m") == _five_minute_view_of(old, "llm_requests_1m")
        # new rows after the migration go through the view, also into buckets the backfill wrote
        after_rows = _rows(_skewed("long_tail", 600, rnd), "m1", T0 + 1800, 3600, rnd)
        _insert(old, after_rows)
        # an interrupted migration re-runs every statement: the backfill adds nothing, however its INSERT ... SELECT
        # splits its output into blocks
        mig = next(m for m in _all_migrations() if m.version == 135)
        inserts = [s for s in mig.render(old.database, names=mig.names) if s.lstrip().upper().startswith("INSERT")]
        assert len(inserts) == 1
        for _ in range(2):
            old.command(inserts[0].rstrip().rstrip(";") + " SETTINGS max_block_size = 7, max_insert_block_size = 7, "
                        "min_insert_block_size_rows = 7, min_insert_block_size_bytes = 0")
        got = old.query("SELECT sum(Requests), sum(TTFTCount), sumMap(TTFTHist) FROM llm_requests_5m").result_rows[0]
        allv = before_rows + after_rows
        assert got[0] == got[1] == 1800
        assert dict(got[2]) == H.counts_of(r["TTFT"] for r in _f32(allv, "TTFT"))
        assert _five_minute_view_of(old, "llm_requests_5m") == _five_minute_view_of(old, "llm_requests_1m")
        m5 = rollup_window(old, T0, T0 + 7200, table="llm_requests_5m")[("svc", "m1")]
        m1 = rollup_window(old, T0, T0 + 7200, table="llm_requests_1m")[("svc", "m1")]
        assert m5.keys() == m1.keys()
        for k, v in m1.items():
            assert m5[k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v), k
        assert migrate(old) == []  # recorded once
    finally:
        old.command(f"DROP DATABASE IF EXISTS `{old.database}`", use_database=False)
        old.close()
