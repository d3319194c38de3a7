"""Read API route ``/api/v1/engine``: the newest engine gauges (KV cache usage, running/waiting requests) per service."""

from __future__ import annotations

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics.api import MAX_WINDOW_S, number_param
from vllm_otel_collector.store.schema import profile

KV_METRIC, RUNNING_METRIC, WAITING_METRIC = sc.METRIC_KV_CACHE_USAGE, sc.METRIC_RUNNING, sc.METRIC_WAITING


def engine_route(store, query: dict[str, str]) -> tuple[int, dict]:
    """Read API handler for ``/api/v1/engine?window=120``: newest value of the KV-cache-usage, running and waiting
    gauges per service within the last ``window`` seconds (the gauge table of the database's schema profile; 1 s to
    400 days, else
    ``ValueError`` → 400). Body: ``{"services": [{"service",
    "kv_cache_usage" (0..1), "running", "waiting", "time" (unix s)}]}``."""
    window = number_param(query, "window", 120.0, 1.0, MAX_WINDOW_S)
    rows = store.query(
        "SELECT ServiceName, argMaxIf(Value, TimeUnix, MetricName = {kv:String}), "
        "argMaxIf(Value, TimeUnix, MetricName = {run:String}), argMaxIf(Value, TimeUnix, MetricName = {wait:String}), "
        "countIf(MetricName = {kv:String}), countIf(MetricName = {run:String}), countIf(MetricName = {wait:String}), "
        f"toUnixTimestamp64Milli(toDateTime64(max(TimeUnix), 3)) / 1e3 FROM {profile(store).gauge} "
        "WHERE MetricName IN ({kv:String}, {run:String}, {wait:String}) "
        "AND TimeUnix >= now64(9) - toIntervalMillisecond({ms:UInt64}) GROUP BY ServiceName ORDER BY ServiceName",
        parameters={"kv": KV_METRIC, "run": RUNNING_METRIC, "wait": WAITING_METRIC, "ms": int(window * 1000)},
    ).result_rows
    return 200, {"services": [
        {"service": s, "kv_cache_usage": kv if nk else None, "running": run if nr else None,
         "waiting": wait if nw else None, "time": t} for s, kv, run, wait, nk, nr, nw, t in rows]}
