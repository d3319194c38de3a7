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

Exponential OTLP histograms (``otel_metrics_exponential_histogram``): :func:`exp_heatmap`, the same rows and the same
temporality rules, computed in Python from the stored points. All points are first downscaled to one output scale
(the smallest scale among the points read, at most ``max_scale``; downscaling by d maps index i to i >> d, OTel data
model "ExponentialHistogram"), so a series whose scale went down between points (the SDK rescales as the range grows)
is differenced bucket by bucket at one scale. At scale s, base = 2^(2^-s); positive bucket i holds (base^i,
base^(i+1)], ``le`` = base^(i+1); the zero bucket has ``le`` = 0; negative bucket i holds [-base^(i+1), -base^i),
``le`` = -base^i. A bound beyond Float64 is ±inf / 0.
"""

from __future__ import annotations

import math
from typing import Any

from vllm_otel_collector.store.schema import Profile, profile

DELTA, CUMULATIVE = 1, 2


def heatmap_sql(metric: str, since: str, until: str, step: str, lookback: str = "3600",
                extra_filter: str = "1", prof: Profile = Profile()) -> str:
    """SQL returning ``(time, le, count)`` ordered by time then le, for SQL expressions ``metric`` (a String),
    ``since``/``until`` (DateTime or unix seconds), ``step`` (seconds, integer) and ``lookback`` (seconds before
    ``since`` searched for the previous cumulative point), on the histogram table of ``prof`` (its name and
    attribute mode)."""
    series = (f"ServiceName, {prof.attrs_key('ResourceAttributes')}, {prof.attrs_key('Attributes')}, StartTimeUnix, "
              f"ExplicitBounds")
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
        f"FROM {prof.histogram} WHERE MetricName = {metric} "
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
                      extra_filter="({service:String} = '' OR ServiceName = {service:String})", prof=profile(store))
    rows = store.query(sql, parameters={"metric": metric, "since": float(since), "until": float(until),
                                        "step": int(step_seconds), "service": service}).result_rows
    return [(int(t.timestamp()), float(le), int(c)) for t, le, c in rows]


def totals(rows: list[tuple[Any, float, int]]) -> dict[float, int]:
    """Counts per ``le`` summed over time (helper for checks and reports)."""
    out: dict[float, int] = {}
    for _t, le, c in rows:
        out[le] = out.get(le, 0) + c
    return out


def _bound(index: int, scale: int) -> float:
    """base^index at ``scale`` (base = 2^(2^-scale)); inf / 0.0 beyond Float64."""
    try:
        return 2.0 ** math.ldexp(index, -scale)
    except OverflowError:
        return math.inf if index > 0 else 0.0


def _buckets(row, scale: int) -> dict[tuple[int, int], int]:
    """One stored point as {(sign, index at ``scale``): count}; sign 0 = zero bucket, 1 = positive, -1 = negative."""
    _t, _start, _temp, s, zero, _n, p_off, p_counts, n_off, n_counts = row[1:]
    shift = s - scale
    out: dict[tuple[int, int], int] = {(0, 0): int(zero)}
    for sign, off, counts in ((1, p_off, p_counts), (-1, n_off, n_counts)):
        for i, c in enumerate(counts):
            key = (sign, (off + i) >> shift)
            out[key] = out.get(key, 0) + int(c)
    return out


def _le(key: tuple[int, int], scale: int) -> float:
    sign, index = key
    if sign == 0:
        return 0.0
    return _bound(index + 1, scale) if sign > 0 else -_bound(index, scale)


def exp_heatmap(store, metric: str, since: float, until: float, step_seconds: int = 60, service: str = "",
                lookback_seconds: int = 3600, max_scale: int = 20) -> tuple[int | None, list[tuple[int, float, int]]]:
    """Heatmap of OTLP exponential histogram ``metric``: ``(output scale, rows)``, rows ``(bucket start unix
    seconds, le, count)`` ordered by time then le, for points with ``since <= TimeUnix < until`` (unix seconds),
    ``step_seconds`` wide time buckets; rows with count 0 included for every bucket a point had. The output scale is
    None when no point was read. Temporality as in the module docstring (cumulative points differenced per series:
    service, resource, attributes, start time; ``lookback_seconds`` before ``since`` searched for the base point).

    Raises ``ValueError`` for ``step_seconds < 1``."""
    if step_seconds < 1:
        raise ValueError(f"step_seconds must be >= 1, got {step_seconds}")
    prof = profile(store)
    rows = store.query(
        f"SELECT cityHash64(ServiceName, {prof.attrs_key('ResourceAttributes')}, {prof.attrs_key('Attributes')}, "
        f"StartTimeUnix), {prof.nanos('TimeUnix')}, {prof.nanos('StartTimeUnix')}, AggregationTemporality, Scale, "
        "ZeroCount, Count, PositiveOffset, PositiveBucketCounts, NegativeOffset, NegativeBucketCounts "
        f"FROM {prof.exponential_histogram} WHERE MetricName = {{metric:String}} "
        "AND TimeUnix >= toDateTime64({since:Float64} - {lookback:UInt32}, 9) "
        "AND TimeUnix < toDateTime64({until:Float64}, 9) "
        "AND ({service:String} = '' OR ServiceName = {service:String}) ORDER BY 1, 2",
        parameters={"metric": metric, "since": float(since), "until": float(until), "lookback": int(lookback_seconds),
                    "service": service}).result_rows
    if not rows:
        return None, []
    scale = min(max_scale, min(r[4] for r in rows))
    since_ns = int(since * 1e9)
    cells: dict[tuple[int, float], int] = {}
    prev_series, prev = None, None
    for row in rows:
        series, t, start, temporality, _s, _z, count = row[:7]
        own = _buckets(row, scale)
        base = prev if series == prev_series else None
        prev_series, prev = series, (own, count)
        if t < since_ns:
            continue
        if temporality != CUMULATIVE:
            counts = own
        elif base is None:
            counts = own if start >= since_ns else {k: 0 for k in own}
        else:
            diff = {k: c - base[0].get(k, 0) for k, c in own.items()}
            reset = count < base[1] or any(d < 0 for d in diff.values()) or set(base[0]) - set(own)
            counts = own if reset else diff
        bucket = (t // 1_000_000_000) // step_seconds * step_seconds
        for key, c in counts.items():
            cell = (bucket, _le(key, scale))
            cells[cell] = cells.get(cell, 0) + c
    return scale, [(t, le, c) for (t, le), c in sorted(cells.items())]
