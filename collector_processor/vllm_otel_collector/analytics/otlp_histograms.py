"""OTLP explicit-bucket histograms (``otel_metrics_histogram``) as heatmap rows: ``(time bucket, le, count)``.

For a user who exports only metrics (``gen_ai.server.time_to_first_token``, ``gen_ai.server.request.duration``,
``gen_ai.server.time_per_output_token`` and the mirrored ``vllm:*`` histograms), this is the same distribution over
time that the request rollups give. One row per (time bucket, bucket upper bound ``le``) with the number of
observations recorded in that time bucket whose value is in (previous bound, ``le``] (``le`` = +Inf for the overflow
bucket), in the metric's unit (seconds for the GenAI server metrics).

Temporality (OTLP ``AggregationTemporality``, stored as the contrib exporter does: 1 = DELTA, 2 = CUMULATIVE):

* DELTA points are counts of their own interval: summed as they are.
* CUMULATIVE points are running totals since ``StartTimeUnix``: each point contributes its difference to the previous
  point of the same series (service, resource, attributes, start time, bounds). A point with no previous point in
  the lookback contributes its whole counts only when its series started inside the window (``StartTimeUnix >=
  since``); otherwise its increase is unknown and it only serves as the base of the next point. A point whose count
  went down (a reset that kept the start time) contributes its own counts.

Exponential OTLP histograms are not stored by the collector (its converter rejects their points with a message), so
they have no rows here.
"""

from __future__ import annotations

from typing import Any

DELTA, CUMULATIVE = 1, 2


def heatmap_sql(metric: str, since: str, until: str, step: str, lookback: str = "3600",
                extra_filter: str = "1") -> str:
    """SQL returning ``(time, le, count)`` ordered by time then le, for SQL expressions ``metric`` (a String),
    ``since``/``until`` (DateTime or unix seconds), ``step`` (seconds, integer) and ``lookback`` (seconds before
    ``since`` searched for the previous cumulative point)."""
    series = "ServiceName, ResourceAttributes, Attributes, StartTimeUnix, ExplicitBounds"
    return (
        f"SELECT toStartOfInterval(TimeUnix, toIntervalSecond({step})) AS time, le, sum(c) AS count FROM ("
        f"SELECT TimeUnix, ExplicitBounds, multiIf("
        f"AggregationTemporality != {CUMULATIVE}, BucketCounts, "
        f"prev_n = 0 AND length(prev) = 0, if(StartTimeUnix >= toDateTime64({since}, 9), BucketCounts, "
        f"arrayMap(x -> toUInt64(0), BucketCounts)), "
        f"Count < prev_n OR length(prev) != length(BucketCounts), BucketCounts, "
        f"arrayMap((x, y) -> toUInt64(x - y), BucketCounts, prev)) AS counts "
        f"FROM (SELECT TimeUnix, StartTimeUnix, ExplicitBounds, BucketCounts, Count, AggregationTemporality, "
        f"lagInFrame(BucketCounts, 1, []) OVER w AS prev, lagInFrame(Count, 1, toUInt64(0)) OVER w AS prev_n "
        f"FROM otel_metrics_histogram WHERE MetricName = {metric} "
        f"AND TimeUnix >= toDateTime64({since}, 9) - toIntervalSecond({lookback}) "
        f"AND TimeUnix < toDateTime64({until}, 9) AND {extra_filter} "
        f"WINDOW w AS (PARTITION BY {series} ORDER BY TimeUnix ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)) "
        f"WHERE TimeUnix >= toDateTime64({since}, 9)) "
        f"ARRAY JOIN counts AS c, arrayPushBack(ExplicitBounds, inf) AS le "
        f"GROUP BY time, le ORDER BY time, le")


def heatmap(store, metric: str, since: float, until: float, step_seconds: int = 60,
            service: str = "") -> list[tuple[int, float, int]]:
    """Heatmap rows ``(bucket start unix seconds, le, count)`` of OTLP histogram ``metric`` with
    ``since <= TimeUnix < until`` (unix seconds), ``step_seconds`` wide time buckets; rows with count 0 included
    (every bound of every bucket that had a point). ``service`` ('' = all) filters ``ServiceName``.

    Raises ``ValueError`` for ``step_seconds < 1``."""
    if step_seconds < 1:
        raise ValueError(f"step_seconds must be >= 1, got {step_seconds}")
    sql = heatmap_sql("{metric:String}", "{since:Float64}", "{until:Float64}", "{step:UInt32}",
                      extra_filter="({service:String} = '' OR ServiceName = {service:String})")
    rows = store.query(sql, parameters={"metric": metric, "since": float(since), "until": float(until),
                                        "step": int(step_seconds), "service": service}).result_rows
    return [(int(t.timestamp()), float(le), int(c)) for t, le, c in rows]


def totals(rows: list[tuple[Any, float, int]]) -> dict[float, int]:
    """Counts per ``le`` summed over time (helper for checks and reports)."""
    out: dict[float, int] = {}
    for _t, le, c in rows:
        out[le] = out.get(le, 0) + c
    return out
