"""Queries benchmark: dashboard panel queries on the rollups vs the same answers computed from raw ``llm_requests``.

Data: :mod:`bench.collector.synth` (10M requests over 7 days; 100k in smoke mode) inserted in chDB, so the materialized views
fill ``llm_requests_1m`` / ``_1h``; then ``OPTIMIZE … FINAL`` on all three tables (a long-running store has merged
its parts). Each panel has a raw and a rollup form returning the same answer (counts exact, quantiles: exact on raw
— ``quantileExactInclusive`` —, from the log-scale histograms on rollups, within 1.083 %; heatmap bucket counts
exact); the forms are run interleaved ``reps`` times through :class:`Store` (clickhouse-connect over chDB: what the
read API and report do). Windows of a day or more read the hourly rollup; the ``*_from_1m`` panels show what merging
1440 minute buckets costs instead, and are left out of the targets. Targets (issues 7, 15): rollups ≥ 20× faster,
rollup p95 < 100 ms, for quantile panels over 24 h and 7 d too; the 24 h × 1 min heatmap p95 < 100 ms.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import new_result, percentile, spread
from vllm_otel_collector.analytics import histogram as H

_SHIFT = 3  # heatmap rows at scale 2 (4 per doubling), as the Grafana heatmaps


def _raw_q(cols: tuple[str, ...], since: str) -> str:
    qs = ", ".join(f"quantilesExactInclusive(0.5, 0.95, 0.99)({c})" for c in cols)
    return (f"SELECT Model, {qs} FROM llm_requests WHERE Timestamp >= toDateTime64({since}, 9) "
            "AND Timestamp < toDateTime64({until}, 9) GROUP BY Model ORDER BY Model")


def _roll_q(table: str, cols: tuple[str, ...], since: str) -> tuple[str, object]:
    """The read API's path (stats.rollup_window): merge the histograms in SQL (sumMap), quantiles in Python."""
    merged = ", ".join(f"sumMap({c}Hist)" for c in cols)
    sql = (f"SELECT Model, {merged} FROM {table} WHERE Bucket >= toDateTime({since}) "
           "AND Bucket < toDateTime({until}) GROUP BY Model ORDER BY Model")

    def post(rows):
        return [(r[0], *([H.quantile(h, q) for q in (0.5, 0.95, 0.99)] for h in r[1:])) for r in rows]

    return sql, post


def _roll_q_sql(table: str, cols: tuple[str, ...], since: str) -> str:
    """The Grafana panels' path: quantiles computed in SQL from the merged histogram (histogram.quantiles_sql)."""
    qs = ", ".join(H.quantiles_sql(f"sumMap({c}Hist)", (0.5, 0.95, 0.99), c) for c in cols)
    return (f"SELECT Model, {qs} FROM {table} WHERE Bucket >= toDateTime({since}) "
            "AND Bucket < toDateTime({until}) GROUP BY Model ORDER BY Model")

_METHOD = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()

#: name -> (description, raw SQL, rollup SQL). {since}/{until} are unix seconds filled at run time.
PANELS: dict[str, tuple[str, str, str]] = {
    "totals_24h_from_1m": (
        "requests, errors, tokens per service/model over the last 24 h, from the 1m rollup (1440 buckets)",
        "SELECT ServiceName, Model, count(), countIf(Status = 'error'), sum(InputTokens), sum(OutputTokens) "
        "FROM llm_requests WHERE Timestamp >= toDateTime64({since}, 9) AND Timestamp < toDateTime64({until}, 9) "
        "GROUP BY ServiceName, Model ORDER BY ServiceName, Model",
        "SELECT ServiceName, Model, sum(Requests), sum(Errors), sum(InputTokens), sum(OutputTokens) "
        "FROM llm_requests_1m WHERE Bucket >= toDateTime({since}) AND Bucket < toDateTime({until}) "
        "GROUP BY ServiceName, Model ORDER BY ServiceName, Model"),
    "totals_24h": (
        "requests, errors, tokens per service/model over the last 24 h (hourly rollup: 24 buckets)",
        "SELECT ServiceName, Model, count(), countIf(Status = 'error'), sum(InputTokens), sum(OutputTokens) "
        "FROM llm_requests WHERE Timestamp >= toDateTime64({since}, 9) AND Timestamp < toDateTime64({until}, 9) "
        "GROUP BY ServiceName, Model ORDER BY ServiceName, Model",
        "SELECT ServiceName, Model, sum(Requests), sum(Errors), sum(InputTokens), sum(OutputTokens) "
        "FROM llm_requests_1h WHERE Bucket >= toDateTime({since}) AND Bucket < toDateTime({until}) "
        "GROUP BY ServiceName, Model ORDER BY ServiceName, Model"),
    "rate_per_minute_6h": (
        "requests per minute per model, last 6 h (time series)",
        "SELECT toStartOfMinute(Timestamp) AS t, Model, count() FROM llm_requests "
        "WHERE Timestamp >= toDateTime64({since6h}, 9) AND Timestamp < toDateTime64({until}, 9) "
        "GROUP BY t, Model ORDER BY t, Model",
        "SELECT Bucket AS t, Model, sum(Requests) FROM llm_requests_1m "
        "WHERE Bucket >= toDateTime({since6h}) AND Bucket < toDateTime({until}) GROUP BY t, Model ORDER BY t, Model"),
    "ttft_quantiles_24h_from_1m": (
        "TTFT p50/p95/p99 per model over the last 24 h, from the 1m rollup (1440 histograms per key)",
        _raw_q(("TTFT",), "{since}"),
        _roll_q("llm_requests_1m", ("TTFT",), "{since}")),
    "ttft_quantiles_24h": (
        "TTFT p50/p95/p99 per model over the last 24 h (hourly rollup: 24 histograms per key)",
        _raw_q(("TTFT",), "{since}"),
        _roll_q("llm_requests_1h", ("TTFT",), "{since}")),
    "ttft_quantiles_24h_sql": (
        "as ttft_quantiles_24h, quantiles computed in SQL (the Grafana panels' form)",
        _raw_q(("TTFT",), "{since}"),
        _roll_q_sql("llm_requests_1h", ("TTFT",), "{since}")),
    "ttft_quantiles_7d": (
        "TTFT p50/p95/p99 per model over 7 days (hourly rollup: 168 histograms per key)",
        _raw_q(("TTFT",), "{since7d}"),
        _roll_q("llm_requests_1h", ("TTFT",), "{since7d}")),
    "all_quantiles_24h": (
        "p50/p95/p99 per model of all 7 latencies (TTFT, TPOT, E2E, queue, prefill, decode, tokens/s), 24 h, hourly",
        _raw_q(H.METRICS, "{since}"),
        _roll_q("llm_requests_1h", H.METRICS, "{since}")),
    "all_quantiles_7d": (
        "p50/p95/p99 per model of all 7 latencies, 7 days, hourly rollup",
        _raw_q(H.METRICS, "{since7d}"),
        _roll_q("llm_requests_1h", H.METRICS, "{since7d}")),
    "heatmap_24h_1m": (
        "TTFT heatmap per model: 24 h × 1 min time buckets × 4 latency buckets per doubling (1m rollup)",
        f"SELECT toStartOfMinute(toDateTime(Timestamp)) AS t, Model, {H.heatmap_key_sql(H.key_sql('TTFT'), _SHIFT)} AS hk, "
        "count() FROM llm_requests WHERE Timestamp >= toDateTime64({since}, 9) "
        "AND Timestamp < toDateTime64({until}, 9) AND TTFT IS NOT NULL GROUP BY t, Model, hk ORDER BY t, Model, hk",
        f"SELECT t, Model, {H.heatmap_key_sql('k', _SHIFT)} AS hk, sum(c) FROM (SELECT Bucket AS t, Model, "
        "sumMap(TTFTHist) AS h FROM llm_requests_1m WHERE Bucket >= toDateTime({since}) "
        "AND Bucket < toDateTime({until}) GROUP BY t, Model) ARRAY JOIN mapKeys(h) AS k, mapValues(h) AS c "
        "GROUP BY t, Model, hk ORDER BY t, Model, hk"),
    "hourly_7d": (
        "hourly requests, mean TTFT and SLOW+ TTFT count per service, 7 days",
        "SELECT toStartOfHour(Timestamp) AS t, ServiceName, count(), avg(TTFT), "
        "countIf(TTFTLevel IN ('SLOW', 'BOTTLENECK')) FROM llm_requests "
        "WHERE Timestamp >= toDateTime64({since7d}, 9) AND Timestamp < toDateTime64({until}, 9) "
        "GROUP BY t, ServiceName ORDER BY t, ServiceName",
        "SELECT Bucket AS t, ServiceName, sum(Requests), sum(TTFTSum) / sum(TTFTCount), sum(TTFTOver) "
        "FROM llm_requests_1h WHERE Bucket >= toDateTime({since7d}) AND Bucket < toDateTime({until}) "
        "GROUP BY t, ServiceName ORDER BY t, ServiceName"),
}


def _answers_match(raw_rows, roll_rows) -> dict:
    """Compare answers: same keys and exact integer columns; relative error of float columns (max)."""
    if len(raw_rows) != len(roll_rows):
        return {"rows_raw": len(raw_rows), "rows_rollup": len(roll_rows), "exact_counts": False, "max_rel_err": None}
    exact, rel = True, 0.0
    for a, b in zip(raw_rows, roll_rows):
        for x, y in zip(_flat(a), _flat(b)):
            if isinstance(x, int) and isinstance(y, int):
                exact &= x == y
            elif isinstance(x, float) and isinstance(y, float):
                rel = max(rel, abs(x - y) / abs(x)) if x else rel
            elif str(x) != str(y):
                exact = False
    return {"rows_raw": len(raw_rows), "rows_rollup": len(roll_rows), "exact_counts": exact, "max_rel_err": rel}


def _flat(row):
    for v in row:
        if isinstance(v, (list, tuple)):
            yield from v
        else:
            yield v


def _storage(store, requests: int) -> dict:
    """Compressed bytes of the rollup tables and of their histogram columns, per request (after OPTIMIZE FINAL)."""
    out = {}
    for table in ("llm_requests", "llm_requests_1m", "llm_requests_1h"):
        total = store.query("SELECT sum(data_compressed_bytes) FROM system.parts WHERE database = currentDatabase() "
                            "AND table = {t:String} AND active", parameters={"t": table}).result_rows[0][0]
        hist = store.query("SELECT sum(data_compressed_bytes) FROM system.columns WHERE database = currentDatabase() "
                           "AND table = {t:String} AND name LIKE '%Hist'", parameters={"t": table}).result_rows[0][0]
        out[table] = {"bytes_per_request": total / requests, "histogram_bytes_per_request": hist / requests}
    return out


def run(smoke: bool, workdir: Path) -> dict:
    from vllm_otel_collector.store import Store, migrate

    rows = 100_000 if smoke else 10_000_000
    reps = 5 if smoke else 25
    result = new_result("queries", smoke, _METHOD)
    store = Store(f"chdb://{workdir}/chdb", database="bench_queries")
    migrate(store)
    from bench.collector.synth import fill_llm_requests

    end = float(int(time.time()) // 3600 * 3600)
    t0 = time.perf_counter()
    fill_llm_requests(store, rows, end=end, days=7.0)
    insert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for table in ("llm_requests", "llm_requests_1m", "llm_requests_1h"):
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    optimize_s = time.perf_counter() - t0
    counts = {t: store.query(f"SELECT count() FROM {t}").result_rows[0][0]
              for t in ("llm_requests", "llm_requests_1m", "llm_requests_1h")}
    params = {"since": end - 86400, "since6h": end - 6 * 3600, "since7d": end - 7 * 86400, "until": end}

    samples: dict[str, dict[str, list[float]]] = {p: {"raw_ms": [], "rollup_ms": []} for p in PANELS}
    answers = {}
    for rep in range(reps + 1):  # rep 0 warms caches and is not recorded
        for name, (_desc, raw_sql, roll_sql) in PANELS.items():
            for form, sql in (("raw", raw_sql), ("rollup", roll_sql)) if rep % 2 == 0 else (("rollup", roll_sql),
                                                                                            ("raw", raw_sql)):
                sql, post = sql if isinstance(sql, tuple) else (sql, None)
                t = time.perf_counter()
                out = store.query(sql.format(**params)).result_rows
                if post is not None:
                    out = post(out)
                ms = (time.perf_counter() - t) * 1000.0
                if rep:
                    samples[name][f"{form}_ms"].append(ms)
                else:
                    answers.setdefault(name, {})[form] = out
    floor = []
    for _ in range(reps):  # the fixed cost of one query through clickhouse-connect + chDB: no rollup can beat it
        t = time.perf_counter()
        store.query("SELECT 1")
        floor.append((time.perf_counter() - t) * 1000.0)
    summary = {}
    for name, (desc, _r, _o) in PANELS.items():
        raw, roll = samples[name]["raw_ms"], samples[name]["rollup_ms"]
        raw_p50, roll_p50 = percentile(raw, 50), percentile(roll, 50)
        summary[name] = {
            "description": desc,
            "raw_ms": {"p50": raw_p50, "p95": percentile(raw, 95)},
            "rollup_ms": {"p50": roll_p50, "p95": percentile(roll, 95)},
            "speedup_p50": raw_p50 / roll_p50 if roll_p50 else None,
            "speedup_per_rep": spread([a / b for a, b in zip(raw, roll) if b]),
            "answers": _answers_match(answers[name]["raw"], answers[name]["rollup"]),
        }
    # Targets over the forms a dashboard should use (the *_from_1m panels show why 24 h windows read the 1h rollup).
    chosen = [s for name, s in summary.items() if not name.endswith("_from_1m") and not name.startswith("heatmap")]
    worst_speedup = min(s["speedup_p50"] for s in chosen)
    worst_p95 = max(s["rollup_ms"]["p95"] for s in chosen)
    quantile = [s for name, s in summary.items() if "quantiles" in name and not name.endswith("_from_1m")]
    q_speedup = min(s["speedup_p50"] for s in quantile)
    q_p95 = max(s["rollup_ms"]["p95"] for s in quantile)
    q_err = max(s["answers"]["max_rel_err"] or 0.0 for name, s in summary.items() if "quantiles" in name)
    heat_p95 = summary["heatmap_24h_1m"]["rollup_ms"]["p95"]
    summary["overall"] = {"rows": rows, "reps": reps, "insert_seconds": insert_s, "insert_rows_per_s": rows / insert_s,
                          "optimize_seconds": optimize_s, "table_rows": counts,
                          "floor_ms": {"p50": percentile(floor, 50), "p95": percentile(floor, 95)},
                          "min_speedup_p50": worst_speedup, "max_rollup_p95_ms": worst_p95,
                          "storage": _storage(store, rows),
                          "quantile_max_rel_err": q_err, "quantile_error_bound": H.RELATIVE_ERROR,
                          "histogram_scale": H.SCALE}
    result["samples"] = samples
    result["summary"] = summary
    result["targets"] = {
        "rollup_speedup_ge_20x": {"target": 20.0, "measured": worst_speedup, "met": worst_speedup >= 20.0},
        "rollup_p95_lt_100ms": {"target": 100.0, "measured": worst_p95, "met": worst_p95 < 100.0},
        "quantile_speedup_ge_20x": {"target": 20.0, "measured": q_speedup, "met": q_speedup >= 20.0},
        "quantile_p95_lt_100ms": {"target": 100.0, "measured": q_p95, "met": q_p95 < 100.0},
        "heatmap_24h_1m_p95_lt_100ms": {"target": 100.0, "measured": heat_p95, "met": heat_p95 < 100.0},
        "quantile_rel_err_le_bound": {"target": H.RELATIVE_ERROR, "measured": q_err,
                                      "met": q_err <= H.RELATIVE_ERROR * (1 + 1e-6)},
    }
    store.close()
    return result
