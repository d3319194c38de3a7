"""The Grafana dashboard's SQL: the panel query builders and the grafana-clickhouse-datasource macro expansion.

Queries are raw SQL for the grafana-clickhouse-datasource plugin, with its macros ``$__timeFilter(col)``,
``$__fromTime``, ``$__toTime``, ``$__interval_s`` and the dashboard variables ``$model`` / ``$trace_id``;
:func:`expand_macros` expands them the way the plugin does (the tests run every panel's query against chDB).

Rollup panels read ``llm_requests_1h`` when the plugin's ``$__interval_s`` is a whole number of hours,
``llm_requests_5m`` when it is a multiple of 5 minutes, ``llm_requests_1m`` otherwise (:func:`by_interval`: the
three forms in one ``UNION ALL``, each gated by a constant condition on ``$__interval_s`` that ClickHouse folds, so
the other tables are not read); panels without a time axis
take the whole hours of the range from the hourly rollup and only the edges from the minute rollup
(:func:`whole_hours_split`). The panels' ``maxDataPoints`` (:data:`MAX_DATA_POINTS`) makes Grafana's interval 5 min
over 24 h and 1 h over 7 days, so a panel's cost depends on its range and width, not on the traffic. Quantile lines
and heatmaps come from the log-scale histograms (:mod:`vllm_otel_collector.analytics.histogram`, quantiles within
1.083 % of the exact ones; heatmap rows are the histogram downscaled to ``HEATMAP_SCALE``: 4 buckets per doubling,
each row's count exact). The SLO query uses
the configured burn-rate rules (:class:`~vllm_otel_collector.analytics.config.BurnRateRule`, the same the alerts
evaluate) and their events (:data:`vllm_otel_collector.analytics.rules.SLO_EVENTS`). Units: seconds throughout.
"""

from __future__ import annotations

import re

from vllm_otel_collector.analytics import histogram as H
from vllm_otel_collector.analytics import otlp_histograms
from vllm_otel_collector.analytics.config import AnalyticsConfig, BurnRateRule
from vllm_otel_collector.analytics.rules import SLO_EVENTS
from vllm_otel_collector.store.schema import Profile

#: Dashboard variable ``model`` (multi-select with "All"): the plugin's ``$__conditionalAll`` drops the filter for All.
MODEL_FILTER = "$__conditionalAll(Model IN (${model:singlequote}), $model)"
MODEL_VARIABLE_SQL = "SELECT DISTINCT Model FROM llm_requests_1m WHERE $__timeFilter(Bucket) ORDER BY Model"
#: Value the tests pass for a variable set to "All".
ALL = "$__all"

#: Rollup bucket for time-series panels: never finer than the 1-minute rollup.
BUCKET = "toStartOfInterval(Bucket, INTERVAL greatest($__interval_s, 60) SECOND)"
#: Heatmap rows: the rollup histograms downscaled to this scale (2: 4 buckets per doubling, bounds 2^(k/4)).
HEATMAP_SCALE = 2
#: The plugin's ``$__interval_s`` (``max(interval, 1)`` whole seconds) is a whole number of hours: the hourly rollup
#: holds every time bucket exactly.
HOURLY = "($__interval_s % 3600 = 0)"
#: ... else a whole number of 5 minutes: the 5-minute rollup (migration 0135) holds every time bucket exactly.
FIVE_MINUTES = "($__interval_s % 3600 != 0 AND $__interval_s % 300 = 0)"
#: ... else the minute rollup (intervals under a minute read it too: :data:`BUCKET` is never finer than a minute).
MINUTES = "($__interval_s % 300 != 0)"
#: Rollup table → the gate under which :func:`by_interval` reads it (exactly one holds for any interval).
GATES = (("llm_requests_1h", HOURLY), ("llm_requests_5m", FIVE_MINUTES), ("llm_requests_1m", MINUTES))
#: ``maxDataPoints`` of the rollup time-series and heatmap panels: Grafana divides the range by it and rounds to its
#: interval steps, so 24 h → 5 min (5-minute rollup, 288 points) and 7 d → 1 h (hourly rollup, 168 points).
MAX_DATA_POINTS = 200


#: Rollup rows of a time-series panel: every bucket of the time buckets that meet the range (the first time bucket
#: whole, as the hourly rollup can only give it), up to ``$__toTime``.
RANGE = "Bucket >= toStartOfInterval($__fromTime, INTERVAL greatest($__interval_s, 60) SECOND) AND Bucket <= $__toTime"


def by_interval(sql: str) -> str:
    """``sql`` (a SELECT with ``{table}``, ``{range}`` and ``{hourly}``, the gate — put ``{range} AND {hourly}`` in
    its WHERE) as a ``UNION ALL`` of its forms on the hourly rollup gated on :data:`HOURLY`, the 5-minute rollup
    gated on :data:`FIVE_MINUTES` and the minute rollup gated on :data:`MINUTES` (:data:`GATES`); ``{range}`` is
    :data:`RANGE`. After macro expansion the gates are constants: ClickHouse reads no part of the gated-off tables."""
    sql = sql.replace("{range}", RANGE)
    return " UNION ALL ".join(sql.replace("{table}", table).replace("{hourly}", gate) for table, gate in GATES)


def whole_hours_split(select: str, where: str = "1") -> str:
    """A range total without a time axis: ``select`` (aggregates over rollup columns, e.g. ``sum(QueueSum) AS q``)
    from the hourly rollup for the hours that lie wholly in the range and from the minute rollup for the minutes at
    its edges, so that it reads at most ~2 hours of minute rows: the same minute buckets as
    ``$__timeFilter(Bucket)`` on the minute rollup (start in [from, to]). Returns a FROM-less row source to
    aggregate again: ``SELECT sum(q) FROM (<this>)``."""
    h0 = "toStartOfHour($__fromTime + 3599)"  # first hour starting at or after from
    h1 = "toStartOfHour($__toTime + 60)"  # hours before this one end (last minute) at or before to
    return (f"SELECT {select} FROM llm_requests_1h WHERE Bucket >= {h0} AND Bucket < {h1} AND {where} UNION ALL "
            f"SELECT {select} FROM llm_requests_1m WHERE $__timeFilter(Bucket) AND (Bucket < {h0} OR Bucket >= {h1}) "
            f"AND {where}")


def representative_sql(key: str) -> str:
    """SQL: the representative value of histogram bucket ``key`` (:func:`histogram.representative`: within
    1.083 % of every value in the bucket; 0 for the zero bucket)."""
    return (f"if({key} = {H.ZERO_KEY}, 0., exp2({key} / {2 ** H.SCALE}) * "
            f"{2.0 * H.GAMMA / (1.0 + H.GAMMA)!r})")


def quantiles_sql(key: str = "k", count: str = "c", levels=(0.5, 0.95, 0.99)) -> str:
    """SQL aggregate: ``Array(Float64)`` of the ``levels`` quantiles of histogram entries ``(key, count)`` (rows of
    un-nested ``<M>Hist`` maps, any number per bucket key). ``quantilesExactWeightedInterpolated`` over the buckets'
    representatives weighted by their counts is ``quantileExactInclusive`` of the multiset of representatives, i.e.
    exactly :func:`histogram.quantile`'s definition (interpolation between the representatives of the buckets
    holding order statistics floor(r) and ceil(r), r = q·(n − 1)), so the 1.083 % bound holds; no lambdas to
    analyse, and the stored maps need no ``sumMap`` first."""
    lv = ", ".join(repr(float(x)) for x in levels)
    return f"quantilesExactWeightedInterpolated({lv})({representative_sql(key)}, {count})"


def latency_sql(metric: str) -> str:
    """Quantile lines ``(time, p50, p95, p99)`` in seconds of ``<metric>Hist`` (hourly or minute rollup by
    ``$__interval_s``): the stored histograms un-nested per time bucket, their quantiles by
    :func:`quantiles_sql`."""
    inner = by_interval(f"SELECT {BUCKET} AS time, k, c FROM {{table}} ARRAY JOIN mapKeys({metric}Hist) AS k, "
                        f"mapValues({metric}Hist) AS c WHERE {{range}} AND {{hourly}} AND {MODEL_FILTER}")
    return (f"SELECT time, q[1] AS p50, q[2] AS p95, q[3] AS p99 FROM (SELECT time, {quantiles_sql()} AS q "
            f"FROM ({inner}) GROUP BY time) ORDER BY time")


def heatmap_sql(metric: str) -> str:
    """Heatmap rows ``(time, le, count)`` of ``<metric>Hist``: per time bucket, the requests whose value is in
    (previous le, le] seconds at :data:`HEATMAP_SCALE` (``le`` as text: the plugin turns it into one field per
    bucket; the zero bucket has le 0). Hourly or minute rollup by ``$__interval_s``; the stored maps are un-nested
    straight into the coarse rows (no ``sumMap`` per time bucket first)."""
    shift = H.SCALE - HEATMAP_SCALE
    inner = by_interval(f"SELECT {BUCKET} AS time, {H.heatmap_key_sql('k', shift)} AS hk, c FROM {{table}} "
                        f"ARRAY JOIN mapKeys({metric}Hist) AS k, mapValues({metric}Hist) AS c "
                        f"WHERE {{range}} AND {{hourly}} AND {MODEL_FILTER}")
    return (f"SELECT time, toString(toFloat32({H.upper_bound_sql('hk', shift)})) AS le, sum(c) AS count FROM ("
            f"{inner}) GROUP BY time, hk ORDER BY time, hk")


#: The causes of migration 0134 from the rollups' columns: slow causes have their own, aborted = Aborts, error =
#: Errors + Timeouts, ok = the rest.
CAUSE_COLUMNS = (("queued", ("CauseQueued",)), ("prefill", ("CausePrefill",)), ("decode", ("CauseDecode",)),
                 ("preempted", ("CausePreempted",)), ("aborted", ("Aborts",)), ("error", ("Errors", "Timeouts")))


def causes_sql() -> str:
    """``(time, ok, queued, prefill, decode, preempted, aborted, error)``: requests per time bucket by cause (rollup
    by ``$__interval_s``); ok = requests − every other cause."""
    sums = {name: "toInt64(" + " + ".join(f"sum({c})" for c in cols) + ")" for name, cols in CAUSE_COLUMNS}
    ok = "toInt64(sum(Requests)) - " + " - ".join(sums.values())
    inner = by_interval(f"SELECT {BUCKET} AS time, {ok} AS ok, " + ", ".join(f"{e} AS {n}" for n, e in sums.items())
                        + f" FROM {{table}} WHERE {{range}} AND {{hourly}} AND {MODEL_FILTER} GROUP BY time")
    return f"SELECT * FROM ({inner}) ORDER BY time"


def goodput_sql() -> str:
    """``(time, Model, good_per_s, requests_per_s)``: per model and time bucket, good requests (0134's ``Good``: ok and
    within the model's SLOs) and all requests per second (rollup by ``$__interval_s``). The plugin turns the
    ``Model`` column into a label: one line per model and measure."""
    inner = by_interval(f"SELECT {BUCKET} AS time, Model, sum(Good) / greatest($__interval_s, 60) AS good_per_s, "
                        f"sum(Requests) / greatest($__interval_s, 60) AS requests_per_s FROM {{table}} "
                        f"WHERE {{range}} AND {{hourly}} AND {MODEL_FILTER} GROUP BY time, Model")
    return f"SELECT * FROM ({inner}) ORDER BY time, Model"


#: The 20 slowest requests of the range with their cause (raw ``llm_requests``; seconds).
SLOWEST_SQL = ("SELECT Timestamp, Model, toString(Cause) AS Cause, E2E, TTFT, TPOT, Queue, InputTokens, OutputTokens, "
               f"Preemptions, TraceId FROM llm_requests WHERE $__timeFilter(Timestamp) AND {MODEL_FILTER} "
               "ORDER BY E2E DESC NULLS LAST, Timestamp LIMIT 20")


def exemplar_sql(metric: str) -> str:
    """The slowest request per time bucket (raw ``llm_requests``): ``(time, <metric>_s, TraceId)`` — the trace
    behind the heatmap's top row, one click away."""
    col = f"{metric.lower()}_s"
    return (f"SELECT toStartOfInterval(Timestamp, INTERVAL greatest($__interval_s, 60) SECOND) AS time, "
            f"max({metric}) AS {col}, argMax(TraceId, {metric}) AS TraceId FROM llm_requests "
            f"WHERE $__timeFilter(Timestamp) AND {MODEL_FILTER} AND {metric} IS NOT NULL GROUP BY time ORDER BY time")


def otlp_exemplar_sql(prof: Profile = Profile()) -> str:
    """OTLP histogram exemplars (SDK exemplar filter trace_based): one row per stored exemplar with its trace id
    (the histogram table of ``prof``)."""
    return ("SELECT toDateTime64(ex.TimeUnix, 9) AS time, MetricName AS metric, ex.Value AS value, "
            f"ex.TraceId AS TraceId FROM {prof.histogram} ARRAY JOIN Exemplars AS ex "
            "WHERE $__timeFilter(TimeUnix) AND ex.TraceId != '' AND MetricName LIKE 'gen_ai.server.%' "
            "ORDER BY time, TraceId LIMIT 1000")


def otlp_heatmap_sql(prof: Profile = Profile()) -> str:
    """The TTFT distribution from OTLP metrics alone (explicit-bucket histograms; cumulative points differenced),
    read from the histogram table of ``prof``."""
    model = prof.attr("Attributes", "gen_ai.request.model")
    return ("SELECT time, if(isInfinite(b), '+Inf', toString(b)) AS le, count FROM (SELECT time, le AS b, count FROM ("
            + otlp_histograms.heatmap_sql("'gen_ai.server.time_to_first_token'", "toUnixTimestamp($__fromTime)",
                                          "toUnixTimestamp($__toTime) + 1", "greatest($__interval_s, 60)",
                                          extra_filter=f"$__conditionalAll({model} IN (${{model:singlequote}}), "
                                                       "$model)", prof=prof)
            + ")) ORDER BY time, b")


OTLP_EXEMPLAR_SQL = otlp_exemplar_sql()
OTLP_HEATMAP_SQL = otlp_heatmap_sql()


def burn_rate_rules(config: AnalyticsConfig | None = None) -> list[BurnRateRule]:
    """The burn-rate rules of ``config`` (default: the built-in defaults), in config order."""
    return [r for r in (config or AnalyticsConfig()).rules if isinstance(r, BurnRateRule)]


def slo_sql(rules: list[BurnRateRule]) -> str:
    """One row per burn-rate rule: burn over its long and short windows ending at the last complete minute before
    ``$__toTime`` (as the evaluator's ``complete_until``), whether both exceed its factor (the alert fires), and the
    error budget left over the dashboard range: ``1 − (bad / total) / (1 − objective)`` (negative: overspent)."""
    parts = []
    for r in rules:
        bad, total = SLO_EVENTS[r.slo]

        def burn(since: str, until: str = "u") -> str:
            cond = f"Bucket >= {since} AND Bucket < {until}"
            return (f"if(sumIf({total}, {cond}) > 0, sumIf({bad}, {cond}) / sumIf({total}, {cond}) / "
                    f"{1.0 - r.objective!r}, NULL)")

        parts.append(
            f"WITH toStartOfMinute($__toTime) AS u SELECT '{r.name}' AS rule, '{r.slo}' AS slo, {r.objective!r} AS objective, "
            f"{burn(f'u - {r.long_seconds}')} AS long_burn, {burn(f'u - {r.short_seconds}')} AS short_burn, "
            f"{r.factor!r} AS factor, ifNull(long_burn > factor AND short_burn > factor, 0) AS firing, "
            f"if(sumIf({total}, $__timeFilter(Bucket)) > 0, 1 - sumIf({bad}, $__timeFilter(Bucket)) / "
            f"sumIf({total}, $__timeFilter(Bucket)) / {1.0 - r.objective!r}, NULL) AS budget_left "
            f"FROM llm_requests_1m WHERE Bucket >= least($__fromTime, toStartOfMinute($__toTime) - "
            f"{max(r.long_seconds, r.short_seconds)}) AND Bucket < $__toTime AND {MODEL_FILTER}")
    return "SELECT * FROM (" + " UNION ALL ".join(parts) + ") ORDER BY rule"


def gauge_sql(metric: str, alias: str, prof: Profile = Profile()) -> str:
    """``(time, <alias>)``: the average of OTLP gauge ``metric`` per time bucket (the raw gauge table of
    ``prof``)."""
    return (f"SELECT toStartOfInterval(TimeUnix, INTERVAL greatest($__interval_s, 1) SECOND) AS time, "
            f"avg(Value) AS {alias} FROM {prof.gauge} WHERE MetricName = '{metric}' "
            f"AND $__timeFilter(TimeUnix) GROUP BY time ORDER BY time")


def running_waiting_sql(prof: Profile = Profile()) -> str:
    """``(time, running, waiting)``: the engine's running/waiting gauges averaged per time bucket."""
    return ("SELECT toStartOfInterval(TimeUnix, INTERVAL greatest($__interval_s, 1) SECOND) AS time, "
            "avgIf(Value, MetricName = 'vllm.requests.running') AS running, "
            f"avgIf(Value, MetricName = 'vllm.requests.waiting') AS waiting FROM {prof.gauge} "
            "WHERE MetricName IN ('vllm.requests.running', 'vllm.requests.waiting') AND $__timeFilter(TimeUnix) "
            "GROUP BY time ORDER BY time")


def trace_sql(prof: Profile = Profile()) -> str:
    """Grafana's trace view of ``$trace_id`` from the traces table of ``prof`` (times in ms; ``kind`` lower-case
    without the pre-2024 ``SPAN_KIND_`` prefix, ``statusCode`` 0 unset / 1 ok / 2 error whichever spelling the
    exporter wrote); tags sorted by key. With JSON attributes the tags are the column's leaf paths (dotted keys are
    nested objects in a JSON column) with their values as JSON text (strings without quotes)."""
    if prof.traces_attributes == "json":  # every leaf path of the JSON column, its value as JSON text (strings bare)
        tags = ("arrayMap(p -> map('key', p, 'value', (arrayFold((acc, k) -> JSONExtractRaw(acc, k), "
                "splitByChar('.', p), toJSONString({c})) AS r, if(startsWith(r, '\"'), JSONExtractString(r), r)).2), "
                "JSONAllPaths({c}))")
    else:
        tags = "arrayMap(k -> map('key', k, 'value', {c}[k]), arraySort(mapKeys({c})))"
    return ("WITH '${trace_id}' AS trace_id, "
            f"(SELECT min(Start) FROM {prof.traces}_trace_id_ts WHERE TraceId = trace_id) AS trace_start, "
            f"(SELECT max(End) + 1 FROM {prof.traces}_trace_id_ts WHERE TraceId = trace_id) AS trace_end "
            "SELECT TraceId AS traceID, SpanId AS spanID, ParentSpanId AS parentSpanID, ServiceName AS serviceName, "
            "SpanName AS operationName, toUnixTimestamp64Nano(Timestamp) / 1000000 AS startTime, "
            f"Duration / 1000000 AS duration, {tags.format(c='SpanAttributes')} AS tags, "
            f"{tags.format(c='ResourceAttributes')} AS serviceTags, "
            "lower(replaceRegexpOne(SpanKind, '^SPAN_KIND_', '')) AS kind, "
            "multiIf(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 2, StatusCode IN ('Ok', 'STATUS_CODE_OK'), 1, 0) "
            "AS statusCode "
            f"FROM {prof.traces} WHERE TraceId = trace_id AND Timestamp >= trace_start AND Timestamp <= trace_end "
            "ORDER BY startTime, spanID")


def _conditional_all(sql: str, variables: dict[str, str | list[str]]) -> str:
    """``$__conditionalAll(condition, $var)`` → ``1=1`` when ``var`` is All, else the condition (parens balanced)."""
    out, i, token = [], 0, "$__conditionalAll("
    while (j := sql.find(token, i)) >= 0:
        out.append(sql[i:j])
        depth, k = 1, j + len(token)
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[k], 0)
            k += 1
        args = sql[j + len(token):k - 1]
        condition, var = args.rsplit(",", 1)
        out.append("1=1" if variables.get(var.strip().lstrip("$"), ALL) == ALL else condition.strip())
        i = k
    return "".join(out) + sql[i:]


def expand_macros(sql: str, from_s: int, to_s: int, interval_s: int,
                  variables: dict[str, str | list[str]] | None = None) -> str:
    """Expand the grafana-clickhouse-datasource macros the way the plugin does (times in unix seconds), then
    dashboard variables: ``${name:singlequote}`` (a list → ``'a','b'``), ``${name}`` and ``$name``. A variable set
    to :data:`ALL` (or absent) makes ``$__conditionalAll(...)`` ``1=1``."""
    variables = dict(variables or {})
    out = _conditional_all(sql, variables)
    out = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m[1]} >= toDateTime({from_s}) AND {m[1]} <= toDateTime({to_s})", out)
    out = out.replace("$__fromTime", f"toDateTime({from_s})").replace("$__toTime", f"toDateTime({to_s})")
    out = out.replace("$__interval_s", str(interval_s))
    for name, value in variables.items():
        values = value if isinstance(value, list) else [value]
        quoted = ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
        out = out.replace("${" + name + ":singlequote}", quoted)
        out = out.replace("${" + name + "}", ",".join(values)).replace("$" + name, ",".join(values))
    return out
