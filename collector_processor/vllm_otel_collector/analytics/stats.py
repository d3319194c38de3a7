"""Window statistics over requests: the pure definitions, and the same numbers read from ClickHouse.

Definitions (all latencies seconds):
- per latency: count of non-missing values, avg, min, max, median, sample std dev (0 when fewer than 2 values),
  p95, p99 — percentiles by linear interpolation between closest ranks (numpy's default; ClickHouse
  ``quantileExactInclusive``);
- success rate = ok / requests; error / abort / timeout rate = that status / requests;
- cache-hit rate = requests with ``CachedTokens > 0`` / requests (vLLM prefix-cache hits);
- SLA compliance = requests whose e2e ≤ ``sla_seconds`` / requests (a request without e2e is not compliant);
  "95% of requests under X s" holds when compliance ≥ 0.95;
- goodput (DistServe, Zhong et al., OSDI 2024): requests that met every latency SLO of their model (``Good``,
  migration 0134) per second of the window; goodput ratio = good / requests; throughput = requests per second;
- causes: requests per ``Cause`` (ok, queued, prefill, decode, preempted, aborted, error; migration 0134).

:func:`summarize` / :func:`window_stats` are the reference (pure Python); :func:`current_stats` computes the same over
raw ``llm_requests`` in ClickHouse; :func:`rollup_window` / :func:`history` read the 1m/1h rollups (counts and sums
exact; quantiles from the log-scale histograms of :mod:`.histogram`, within ``histogram.RELATIVE_ERROR`` = 1.083 % of
the exact value).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from vllm_otel_collector.analytics import histogram as H

LATENCIES = ("TTFT", "TPOT", "E2E", "Queue")
#: The values of ``llm_requests.Cause``; the slow ones have rollup columns ``Cause<Name>``.
CAUSES = ("ok", "queued", "prefill", "decode", "preempted", "aborted", "error")
SLOW_CAUSES = ("queued", "prefill", "decode", "preempted")
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """count, avg, min, max, median, stddev (sample), p95, p99 of the non-missing ``values`` (seconds).

    All but ``count`` are ``None`` for no values.
    """
    vals = sorted(v for v in values if v is not None)
    n = len(vals)
    if n == 0:
        return {"count": 0, "avg": None, "min": None, "max": None, "median": None, "stddev": None, "p95": None,
                "p99": None}
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {"count": n, "avg": mean, "min": vals[0], "max": vals[-1], "median": _percentile(vals, 0.5),
            "stddev": std, "p95": _percentile(vals, 0.95), "p99": _percentile(vals, 0.99)}


def _rates(requests: int, ok: int, errors: int, aborts: int, timeouts: int, cache_hits: int, compliant: int,
           sla_seconds: float, sla_target: float) -> dict[str, Any]:
    def rate(x: int) -> float | None:
        return x / requests if requests else None

    compliance = rate(compliant)
    return {"requests": requests, "success_rate": rate(ok), "error_rate": rate(errors), "abort_rate": rate(aborts),
            "timeout_rate": rate(timeouts), "cache_hit_rate": rate(cache_hits),
            "sla": {"seconds": sla_seconds, "target": sla_target, "compliance": compliance,
                    "met": None if compliance is None else compliance >= sla_target}}


def goodput(requests: int, good: int, slow: dict[str, int], aborted: int, errors: int,
            window_seconds: float) -> dict[str, Any]:
    """``{"goodput": {good, ratio, per_second, throughput}, "causes": {cause: count}}``: ``ratio`` = good / requests
    (``None`` without requests); ``per_second`` and ``throughput`` (requests/s) over ``window_seconds``; causes from
    the slow-cause counts ``slow`` plus aborted and errors (error + timeout); ok = the rest."""
    causes = {"ok": requests - sum(slow.values()) - aborted - errors, **{c: slow.get(c, 0) for c in SLOW_CAUSES},
              "aborted": aborted, "error": errors}
    w = max(float(window_seconds), 1e-9)
    return {"goodput": {"good": good, "ratio": good / requests if requests else None, "per_second": good / w,
                        "throughput": requests / w}, "causes": causes}


def window_stats(rows: Iterable[dict], sla_seconds: float = 2.0, sla_target: float = 0.95,
                 window_seconds: float = 1.0) -> dict[str, Any]:
    """Statistics of one group of ``llm_requests`` rows (dicts with the table's column names) of a window of
    ``window_seconds``.

    Returns ``{requests, success_rate, error_rate, abort_rate, timeout_rate, cache_hit_rate, sla: {seconds, target,
    compliance, met}, tokens: {input, output, cached}, latency: {ttft|tpot|e2e|queue: summarize(...)}, goodput:
    {good, ratio, per_second, throughput}, causes: {cause: count}}``.
    """
    rows = list(rows)
    status = [r["Status"] for r in rows]
    out = _rates(len(rows), status.count("ok"), status.count("error"), status.count("abort"),
                 status.count("timeout"), sum(1 for r in rows if r["CachedTokens"] > 0),
                 sum(1 for r in rows if r["E2E"] is not None and r["E2E"] <= sla_seconds), sla_seconds, sla_target)
    out["tokens"] = {"input": sum(r["InputTokens"] for r in rows), "output": sum(r["OutputTokens"] for r in rows),
                     "cached": sum(r["CachedTokens"] for r in rows)}
    out["latency"] = {m.lower(): summarize(r[m] for r in rows) for m in LATENCIES}
    causes = [r["Cause"] for r in rows]
    out.update(goodput(len(rows), sum(1 for r in rows if r["Good"]), {c: causes.count(c) for c in SLOW_CAUSES},
                       causes.count("aborted"), causes.count("error"), window_seconds))
    return out


def usage(rows: Iterable[dict]) -> list[dict[str, Any]]:
    """Usage by (model, LoRA adapter): requests and token sums, sorted by requests descending then names."""
    acc: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        a = acc.setdefault((r["Model"], r["LoraName"]), [0, 0, 0])
        a[0] += 1
        a[1] += r["InputTokens"]
        a[2] += r["OutputTokens"]
    return [{"model": m, "lora": lo, "requests": a[0], "input_tokens": a[1], "output_tokens": a[2]}
            for (m, lo), a in sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))]


# ---- ClickHouse ------------------------------------------------------------------------------------------------------
_FILTERS = ("({service:String} = '' OR ServiceName = {service:String}) "
            "AND ({model:String} = '' OR Model = {model:String})")


def _latency_sql(m: str) -> str:
    return (f"count({m}), avg({m}), min({m}), max({m}), quantilesExactInclusive(0.5, 0.95, 0.99)({m}), "
            f"if(count({m}) > 1, stddevSamp(toFloat64({m})), 0)")


def _num(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def current_stats(store, since: float, until: float, sla_seconds: float = 2.0, sla_target: float = 0.95,
                  service: str = "", model: str = "") -> list[dict[str, Any]]:
    """:func:`window_stats` per (service, model, operation) over raw ``llm_requests`` with
    ``since <= Timestamp < until`` (unix seconds). Exact, same definitions as the pure function."""
    lat = ", ".join(_latency_sql(m) for m in LATENCIES)
    sql = (
        "SELECT ServiceName, Model, Operation, count(), countIf(Status = 'ok'), countIf(Status = 'error'), "
        "countIf(Status = 'abort'), countIf(Status = 'timeout'), countIf(CachedTokens > 0), "
        "countIf(E2E <= {sla:Float64}), sum(InputTokens), sum(OutputTokens), sum(CachedTokens), " + lat + ", "
        "countIf(Good = 1), " + ", ".join(f"countIf(Cause = '{c}')" for c in SLOW_CAUSES + ("aborted", "error")) +
        " FROM llm_requests WHERE Timestamp >= toDateTime64({since:Float64}, 9) "
        "AND Timestamp < toDateTime64({until:Float64}, 9) AND " + _FILTERS +
        " GROUP BY ServiceName, Model, Operation ORDER BY ServiceName, Model, Operation")
    params = {"since": float(since), "until": float(until), "sla": float(sla_seconds), "service": service,
              "model": model}
    out = []
    for row in store.query(sql, parameters=params).result_rows:
        svc, mdl, op, n, ok, err, ab, to, hits, compliant, tin, tout, tcached = row[:13]
        item = {"service": svc, "model": mdl, "operation": op}
        item.update(_rates(n, ok, err, ab, to, hits, compliant, sla_seconds, sla_target))
        item["tokens"] = {"input": tin, "output": tout, "cached": tcached}
        good, *slow = row[13 + 6 * len(LATENCIES):]
        item.update(goodput(n, good, dict(zip(SLOW_CAUSES, slow)), slow[-2], slow[-1], float(until) - float(since)))
        item["latency"] = {}
        for k, m in enumerate(LATENCIES):
            cnt, avg, mn, mx, qs, std = row[13 + 6 * k: 19 + 6 * k]
            item["latency"][m.lower()] = (
                {"count": 0, "avg": None, "min": None, "max": None, "median": None, "stddev": None, "p95": None,
                 "p99": None} if cnt == 0 else
                {"count": cnt, "avg": avg, "min": float(mn), "max": float(mx), "median": qs[0], "stddev": _num(std),
                 "p95": qs[1], "p99": qs[2]})
        out.append(item)
    return out


def usage_query(store, since: float, until: float, service: str = "", model: str = "") -> list[dict[str, Any]]:
    """:func:`usage` over raw ``llm_requests`` (``since <= Timestamp < until``, unix seconds)."""
    sql = ("SELECT Model, LoraName, count() AS n, sum(InputTokens), sum(OutputTokens) FROM llm_requests "
           "WHERE Timestamp >= toDateTime64({since:Float64}, 9) AND Timestamp < toDateTime64({until:Float64}, 9) "
           "AND " + _FILTERS + " GROUP BY Model, LoraName ORDER BY n DESC, Model, LoraName")
    rows = store.query(sql, parameters={"since": float(since), "until": float(until), "service": service,
                                        "model": model}).result_rows
    return [{"model": m, "lora": lo, "requests": n, "input_tokens": i, "output_tokens": o} for m, lo, n, i, o in rows]


_ROLLUP_COLUMNS = (
    "sum(Requests), sum(Ok), sum(Errors), sum(Aborts), sum(Timeouts), sum(InputTokens), sum(OutputTokens), "
    "sum(CachedTokens), sum(CacheHits), "
    + ", ".join(f"sum({m}Count), sum({m}Sum)" for m in LATENCIES + ("Prefill", "Decode", "TokensPerSecond")) + ", "
    + ", ".join(f"sum({m}Over), max({m}Max)" for m in LATENCIES) + ", "
    + ", ".join(f"sumMap({m}Hist)" for m in H.METRICS)  # merged histograms; quantiles in Python (cheaper to plan)
    + ", sum(Good), " + ", ".join(f"sum(Cause{c.capitalize()})" for c in SLOW_CAUSES)
)
#: Rollup tables by bucket width in seconds (migrations 0101, 0135): all have the same columns.
ROLLUP_TABLES = {60: "llm_requests_1m", 300: "llm_requests_5m", 3600: "llm_requests_1h"}

_GROUPINGS = {
    "service_model": ("ServiceName", "Model"),
    "service_model_operation": ("ServiceName", "Model", "Operation"),
    "total": (),
}


def _rollup_metrics(vals: Sequence[Any], window_seconds: float) -> dict[str, Any]:
    n, ok, err, ab, to, tin, tout, tcached, hits = vals[:9]
    m: dict[str, Any] = {"requests": n, "ok": ok, "errors": err, "aborts": ab, "timeouts": to,
                         "input_tokens": tin, "output_tokens": tout, "cached_tokens": tcached, "cache_hits": hits}
    rate = (lambda x: x / n) if n else (lambda x: None)
    m.update(success_rate=rate(ok), error_rate=rate(err), abort_rate=rate(ab), timeout_rate=rate(to),
             cache_hit_rate=rate(hits), timeouts_per_minute=to / (window_seconds / 60.0))
    pos = 9
    for name in LATENCIES + ("Prefill", "Decode", "TokensPerSecond"):
        cnt, total = vals[pos], vals[pos + 1]
        pos += 2
        key = "tokens_per_second" if name == "TokensPerSecond" else name.lower()
        m[f"{key}_count"] = cnt
        m[f"{key}_avg" if key != "tokens_per_second" else key] = total / cnt if cnt else None
    for name in LATENCIES:
        m[f"{name.lower()}_over"] = vals[pos]
        m[f"{name.lower()}_max"] = float(vals[pos + 1]) if m[f"{name.lower()}_count"] else None
        pos += 2
    for name in H.METRICS:
        key = "tokens_per_second" if name == "TokensPerSecond" else name.lower()
        hist = vals[pos] or {}
        pos += 1
        for q in QUANTILES:
            m[f"{key}_p{round(q * 100)}"] = H.quantile(hist, q)
    extra = goodput(n, vals[pos], dict(zip(SLOW_CAUSES, vals[pos + 1:pos + 5])), ab, err + to, window_seconds)
    m["good"], m["goodput_ratio"] = extra["goodput"]["good"], extra["goodput"]["ratio"]
    m["goodput_per_second"], m["throughput"] = extra["goodput"]["per_second"], extra["goodput"]["throughput"]
    m["causes"] = extra["causes"]
    return m


def rollup_window(store, since: float, until: float, grouping: str = "service_model", table: str = "llm_requests_1m",
                  service: str = "", model: str = "") -> dict[tuple, dict[str, Any]]:
    """Merge rollup buckets with ``since <= Bucket < until`` (unix seconds) per grouping key.

    Returns ``{(service, model[, operation]): metrics}`` where metrics has counts (requests, ok, errors, aborts,
    timeouts, tokens, cache_hits), rates (success/error/abort/timeout/cache_hit), ``timeouts_per_minute`` (over
    ``until - since``), per latency ``<m>_count/_avg/_max/_over/_p50/_p90/_p95/_p99`` (seconds; histogram quantiles,
    within 1.083 % of the exact ones), ``prefill_avg``/``decode_avg`` and their quantiles, ``tokens_per_second`` (mean
    of per-request tokens/s) and its quantiles ``tokens_per_second_p50`` …
    ``grouping`` is one of ``service_model``, ``service_model_operation``, ``total``.
    """
    if table not in ROLLUP_TABLES.values():
        raise ValueError(f"not a rollup table: {table}")
    keys = _GROUPINGS[grouping]
    key_sql = ", ".join(keys)
    group = f" GROUP BY {key_sql}" if keys else ""
    order = f" ORDER BY {key_sql}" if keys else ""
    sql = (f"SELECT {key_sql + ', ' if keys else ''}{_ROLLUP_COLUMNS} FROM {table} "
           "WHERE Bucket >= toDateTime({since:Float64}) AND Bucket < toDateTime({until:Float64}) AND " + _FILTERS
           + group + " HAVING sum(Requests) > 0" + order)
    rows = store.query(sql, parameters={"since": float(since), "until": float(until), "service": service,
                                        "model": model}).result_rows
    window = max(float(until) - float(since), 1.0)
    return {tuple(r[:len(keys)]): _rollup_metrics(r[len(keys):], window) for r in rows}


def history_step(step_seconds: int) -> int:
    """The rollup bucket width (seconds) :func:`history` uses for ``step_seconds``: 3600 from 3600 s, 300 from 300 s,
    else 60."""
    return 3600 if step_seconds >= 3600 else 300 if step_seconds >= 300 else 60


def history(store, since: float, until: float, step_seconds: int = 60, service: str = "",
            model: str = "") -> list[dict[str, Any]]:
    """Time series per (bucket, service, model): a step of 3600 s or more reads ``llm_requests_1h``, 300 s or more
    ``llm_requests_5m``, anything else the 1m rollup (:func:`history_step`).

    Each point: ``{"bucket": unix seconds, "service", "model", **metrics}`` (metrics as in :func:`rollup_window`).
    """
    width = history_step(step_seconds)
    table = ROLLUP_TABLES[width]
    sql = ("SELECT toUnixTimestamp(Bucket) AS b, ServiceName, Model, " + _ROLLUP_COLUMNS + f" FROM {table} "
           "WHERE Bucket >= toDateTime({since:Float64}) AND Bucket < toDateTime({until:Float64}) AND " + _FILTERS
           + " GROUP BY b, ServiceName, Model ORDER BY b, ServiceName, Model")
    rows = store.query(sql, parameters={"since": float(since), "until": float(until), "service": service,
                                        "model": model}).result_rows
    return [{"bucket": r[0], "service": r[1], "model": r[2], **_rollup_metrics(r[3:], float(width))} for r in rows]
