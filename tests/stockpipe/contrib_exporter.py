"""What the OpenTelemetry Collector contrib ``clickhouseexporter`` writes, reproduced from its own source (no Go
Collector binary exists here), so tests can fill a ClickHouse database exactly as a stock pipeline would.

Read in opentelemetry-collector-contrib, ``exporter/clickhouseexporter``:

- DDL: ``internal/sqltemplates/traces_table.sql`` (current: ``PRIMARY KEY (ServiceName, SpanName,
  toDateTime(Timestamp))``, ``ORDER BY (..., Timestamp)``, ALIAS columns ``ResourceAttributeItems`` /
  ``SpanAttributeItems``), the older ``ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))`` without
  ``Timestamp`` and ``Duration Int64`` of ``exporter_traces.go`` before 2024, ``traces_json_table.sql``
  (``json: true``), ``traces_id_ts_lookup_*.sql``, the metrics tables (``TimeUnix`` ``DateTime64(9)`` or, in newer
  templates, ``DateTime``; ``MetricName`` ``String`` or ``LowCardinality(String)``).
- Rows: ``exporter_traces.go`` — the 22-column INSERT (``traces_insert.sql``); attribute values with pdata
  ``Value.AsString()`` (``pdata/pcommon/value.go``: ints decimal, bools ``true``/``false``, doubles ES6
  (``float64AsString``; NaN/Inf → ``json: unsupported value: NaN``), bytes base64, slices/maps
  ``json.Marshal`` of ``AsRaw()``, whose error is ignored → ``''``); ``traceutil.SpanKindStr`` /
  ``StatusCodeStr`` (``Server``/``Ok``…, before Aug 2024 ``SPAN_KIND_SERVER``/``STATUS_CODE_OK``…); ids as
  lowercase hex or ``''``; ``Duration`` = end − start in ns; ``ServiceName`` = resource ``service.name``.
- JSON mode: ``exporter_traces_json.go`` — attribute columns get ``json.Marshal(attrs.AsRaw())``; a NaN or Inf
  double makes ``json.Marshal`` fail and the whole push fails (:class:`ExportFailed`).
- Metrics: ``internal/metrics/*_metrics.go`` — one row per data point, exemplars as Nested columns.

Inserts go in Native blocks of the caller's sizes through clickhouse-connect (the Go driver sends Native blocks too).
"""

from __future__ import annotations

import base64
import json
import math
from decimal import Decimal
from typing import Any, Iterable

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TRACE_INSERT_COLUMNS = (  # traces_insert.sql, in order: 22 columns
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
    "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode", "StatusMessage",
    "Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId", "Links.SpanId", "Links.TraceState",
    "Links.Attributes",
)
KINDS = {"current": ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"),
         "legacy": ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
                    "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")}
STATUSES = {"current": ("Unset", "Ok", "Error"), "legacy": ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")}


class ExportFailed(Exception):
    """The exporter's push fails before anything reaches ClickHouse (JSON mode: ``json.Marshal`` of a NaN/Inf)."""


# -- values -----------------------------------------------------------------------------------------------------------
def es6(f: float) -> str:
    """Go ``encoding/json``'s float64 formatting (pdata ``float64AsString``): shortest round-trip digits, ``'f'``
    form for 1e-6 <= |f| < 1e21 (and 0), else ``'e'`` form with the exponent unpadded (``5e-7``, ``1e+21``)."""
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    digits_s = "".join(map(str, digits)).rstrip("0") or "0"
    exp10 = exp + len(digits) - 1  # position of the first digit
    if 1e-6 <= abs(f) < 1e21:
        text = format(Decimal(repr(f)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    mant = digits_s[0] + ("." + digits_s[1:] if len(digits_s) > 1 else "")
    return f"{'-' if sign else ''}{mant}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}".replace("e-0", "e-")


def _go_json(obj: Any) -> str:
    """``json.Marshal``: sorted map keys, ES6 floats, HTML-safe escapes; NaN/Inf raise ``ValueError``."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"json: unsupported value: {obj}")
        return es6(obj)
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if obj is None:
        return "null"
    if isinstance(obj, str):
        return (json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
                .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    if isinstance(obj, bytes):
        return '"' + base64.b64encode(obj).decode() + '"'
    if isinstance(obj, list):
        return "[" + ",".join(_go_json(x) for x in obj) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(f"{_go_json(k)}:{_go_json(v)}" for k, v in sorted(obj.items())) + "}"
    raise TypeError(type(obj))


def as_raw(av) -> Any:
    """pdata ``Value.AsRaw()`` of an OTLP ``AnyValue``."""
    kind = av.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [as_raw(x) for x in av.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: as_raw(kv.value) for kv in av.kvlist_value.values}
    return getattr(av, kind)


def as_string(av) -> str:
    """pdata ``Value.AsString()`` of an OTLP ``AnyValue``."""
    kind = av.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return av.string_value
    if kind == "bool_value":
        return "true" if av.bool_value else "false"
    if kind == "int_value":
        return str(av.int_value)
    if kind == "double_value":
        d = av.double_value
        if not math.isfinite(d):
            return "json: unsupported value: " + ("NaN" if d != d else "+Inf" if d > 0 else "-Inf")
        return es6(d)
    if kind == "bytes_value":
        return base64.b64encode(av.bytes_value).decode()
    try:  # slices and maps: json.Marshal(AsRaw()), its error ignored
        return _go_json(as_raw(av))
    except ValueError:
        return ""


def attributes(kvs, json_mode: bool) -> Any:
    """An attribute list as the exporter sends it: ``{key: AsString}`` (Map mode; a repeated key keeps the last,
    as pcommon.Map.Range over the wire list does not dedupe — the Go driver's OrderedMap keeps the last), or the
    ``json.Marshal(AsRaw())`` text (JSON mode)."""
    if not json_mode:
        return {kv.key: as_string(kv.value) for kv in kvs}
    try:
        return _go_json({kv.key: as_raw(kv.value) for kv in kvs})
    except ValueError as exc:
        raise ExportFailed(f"failed to marshal json trace span attributes: {exc}") from None


def _hex(b: bytes) -> str:
    return b.hex() if any(b) else ""


# -- traces -----------------------------------------------------------------------------------------------------------
def trace_rows(body: bytes, json_mode: bool = False, spellings: str = "current") -> list[tuple]:
    """The rows ``pushTraceData`` appends for one ``ExportTraceServiceRequest`` (protobuf bytes), in
    :data:`TRACE_INSERT_COLUMNS` order. Raises :class:`ExportFailed` where the exporter's push fails."""
    req = ExportTraceServiceRequest.FromString(body)
    kinds, statuses = KINDS[spellings], STATUSES[spellings]
    rows = []
    for rs in req.resource_spans:
        res = attributes(rs.resource.attributes, json_mode)
        service = next((as_string(kv.value) for kv in rs.resource.attributes if kv.key == "service.name"), "")
        for ss in rs.scope_spans:
            for s in ss.spans:
                rows.append((
                    s.start_time_unix_nano, _hex(s.trace_id), _hex(s.span_id), _hex(s.parent_span_id),
                    s.trace_state, s.name, kinds[s.kind] if s.kind < len(kinds) else "", service, res,
                    ss.scope.name, ss.scope.version, attributes(s.attributes, json_mode),
                    s.end_time_unix_nano - s.start_time_unix_nano,
                    statuses[s.status.code] if s.status.code < len(statuses) else "", s.status.message,
                    [e.time_unix_nano for e in s.events], [e.name for e in s.events],
                    [attributes(e.attributes, json_mode) for e in s.events],
                    [_hex(lk.trace_id) for lk in s.links], [_hex(lk.span_id) for lk in s.links],
                    [lk.trace_state for lk in s.links], [attributes(lk.attributes, json_mode) for lk in s.links],
                ))
    return rows


def insert_traces(store, table: str, rows: list[tuple], block_sizes: Iterable[int] = (7, 64, 1, 500)) -> int:
    """Insert ``rows`` into ``table`` of ``store``'s database in Native blocks whose sizes cycle through
    ``block_sizes`` (the exporter's batches vary with its ``sending_queue``). Returns the rows inserted."""
    return _insert_blocks(store, table, TRACE_INSERT_COLUMNS, rows, block_sizes)


def _insert_blocks(store, table: str, columns: tuple[str, ...], rows: list[tuple], block_sizes) -> int:
    sizes, done = list(block_sizes), 0
    k = 0
    while done < len(rows):
        chunk = rows[done:done + sizes[k % len(sizes)]]
        k += 1
        store.insert(table, {c: [r[i] for r in chunk] for i, c in enumerate(columns)})
        done += len(chunk)
    return done


# -- metrics ----------------------------------------------------------------------------------------------------------
_COMMON = ("ResourceAttributes", "ResourceSchemaUrl", "ScopeName", "ScopeVersion", "ScopeAttributes",
           "ScopeDroppedAttrCount", "ScopeSchemaUrl", "ServiceName", "MetricName", "MetricDescription", "MetricUnit",
           "Attributes", "StartTimeUnix", "TimeUnix")
_EXEMPLARS = ("Exemplars.FilteredAttributes", "Exemplars.TimeUnix", "Exemplars.Value", "Exemplars.SpanId",
              "Exemplars.TraceId")
METRIC_INSERT_COLUMNS = {
    "gauge": _COMMON + ("Value", "Flags") + _EXEMPLARS,
    "sum": _COMMON + ("Value", "Flags") + _EXEMPLARS + ("AggregationTemporality", "IsMonotonic"),
    "histogram": _COMMON + ("Count", "Sum", "BucketCounts", "ExplicitBounds") + _EXEMPLARS
    + ("Flags", "Min", "Max", "AggregationTemporality"),
    "exponential_histogram": _COMMON + ("Count", "Sum", "Scale", "ZeroCount", "PositiveOffset",
                                        "PositiveBucketCounts", "NegativeOffset", "NegativeBucketCounts")
    + _EXEMPLARS + ("Flags", "Min", "Max", "AggregationTemporality"),
}


def _value(dp) -> float:
    return float(dp.as_int) if dp.WhichOneof("value") == "as_int" else dp.as_double


def _exemplars(dp, json_mode: bool) -> tuple:
    ex = list(dp.exemplars)
    return ([attributes(e.filtered_attributes, json_mode) for e in ex], [e.time_unix_nano for e in ex],
            [_value(e) for e in ex], [_hex(e.span_id) for e in ex], [_hex(e.trace_id) for e in ex])


def metric_rows(body: bytes, json_mode: bool = False) -> dict[str, list[tuple]]:
    """Rows per table kind (``gauge``/``sum``/``histogram``/``exponential_histogram``) for one
    ``ExportMetricsServiceRequest``, in :data:`METRIC_INSERT_COLUMNS` order (times in ns)."""
    req = ExportMetricsServiceRequest.FromString(body)
    out: dict[str, list[tuple]] = {k: [] for k in METRIC_INSERT_COLUMNS}
    for rm in req.resource_metrics:
        res = attributes(rm.resource.attributes, json_mode)
        service = next((as_string(kv.value) for kv in rm.resource.attributes if kv.key == "service.name"), "")
        for sm in rm.scope_metrics:
            scope = (sm.scope.name, sm.scope.version, attributes(sm.scope.attributes, json_mode),
                     sm.scope.dropped_attributes_count, sm.schema_url)
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                head = (res, rm.schema_url, *scope, service, m.name, m.description, m.unit)
                data = getattr(m, kind, None)
                for dp in getattr(data, "data_points", []):
                    common = head + (attributes(dp.attributes, json_mode), dp.start_time_unix_nano,
                                     dp.time_unix_nano)
                    if kind == "gauge":
                        out["gauge"].append(common + (_value(dp), dp.flags) + _exemplars(dp, json_mode))
                    elif kind == "sum":
                        out["sum"].append(common + (_value(dp), dp.flags) + _exemplars(dp, json_mode)
                                          + (int(data.aggregation_temporality), bool(data.is_monotonic)))
                    elif kind == "histogram":
                        out["histogram"].append(common + (dp.count, dp.sum, list(dp.bucket_counts),
                                                          list(dp.explicit_bounds)) + _exemplars(dp, json_mode)
                                                + (dp.flags, dp.min, dp.max, int(data.aggregation_temporality)))
                    elif kind == "exponential_histogram":
                        out["exponential_histogram"].append(
                            common + (dp.count, dp.sum, dp.scale, dp.zero_count, dp.positive.offset,
                                      list(dp.positive.bucket_counts), dp.negative.offset,
                                      list(dp.negative.bucket_counts)) + _exemplars(dp, json_mode)
                            + (dp.flags, dp.min, dp.max, int(data.aggregation_temporality)))
    return out


def insert_metrics(store, tables: dict[str, str], rows: dict[str, list[tuple]],
                   block_sizes: Iterable[int] = (50, 3, 400)) -> dict[str, int]:
    """Insert :func:`metric_rows` output into ``tables`` (kind → table name). Returns rows per kind."""
    return {k: _insert_blocks(store, tables[k], METRIC_INSERT_COLUMNS[k], r, block_sizes) for k, r in rows.items()
            if r}


# -- DDL --------------------------------------------------------------------------------------------------------------
def traces_ddl(table: str = "otel_traces", variant: str = "current", json_mode: bool = False) -> list[str]:
    """The exporter's CREATE statements for ``table`` (+ its ``_trace_id_ts`` lookup and view).

    ``variant``: ``current`` (``ORDER BY (..., toDateTime(Timestamp), Timestamp)``, ALIAS item columns),
    ``no_timestamp_order`` (sorting key without ``Timestamp``), ``int64_duration`` (``Duration Int64``)."""
    attr = "JSON" if json_mode else "Map(LowCardinality(String), String)"
    duration = "Int64" if variant == "int64_duration" else "UInt64"
    order = ("(ServiceName, SpanName, toDateTime(Timestamp))" if variant == "no_timestamp_order"
             else "(ServiceName, SpanName, toDateTime(Timestamp), Timestamp)")
    extra = "" if json_mode else (
        "    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), "
        "CAST(ResourceAttributes, 'Array(Tuple(String, String))')),\n"
        "    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), "
        "CAST(SpanAttributes, 'Array(Tuple(String, String))')),\n"
        "    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,\n"
        "    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,\n")
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {attr} CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {attr} CODEC(ZSTD(1)),
    Duration {duration} CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes {attr}) CODEC(ZSTD(1)),
    Links Nested (TraceId String, SpanId String, TraceState String, Attributes {attr}) CODEC(ZSTD(1)),
{extra}    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
{"PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))" if variant == "current" and not json_mode else ""}
ORDER BY {order}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""",
        f"""CREATE TABLE IF NOT EXISTS {table}_trace_id_ts (
    TraceId String CODEC(ZSTD(1)),
    Start DateTime64(9) CODEC(Delta, ZSTD(1)),
    End DateTime64(9) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree() PARTITION BY toDate(Start) ORDER BY (TraceId, Start)
SETTINGS index_granularity = 8192""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_trace_id_ts_mv TO {table}_trace_id_ts AS
SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End FROM {table} WHERE TraceId != '' GROUP BY TraceId""",
    ]


def metrics_ddl(kind: str, table: str, time_type: str = "DateTime64(9)", metric_name: str = "String",
                json_mode: bool = False) -> str:
    """The exporter's CREATE statement for the metrics table of ``kind`` (``time_type`` ``DateTime64(9)`` or
    ``DateTime``; ``metric_name`` ``String`` or ``LowCardinality(String)``)."""
    attr = "JSON" if json_mode else "Map(LowCardinality(String), String)"
    specific = {
        "gauge": "Value Float64, Flags UInt32,",
        "sum": "Value Float64, Flags UInt32,",
        "histogram": "Count UInt64, Sum Float64, BucketCounts Array(UInt64), ExplicitBounds Array(Float64),",
        "exponential_histogram": "Count UInt64, Sum Float64, Scale Int32, ZeroCount UInt64, PositiveOffset Int32, "
                                 "PositiveBucketCounts Array(UInt64), NegativeOffset Int32, "
                                 "NegativeBucketCounts Array(UInt64),",
        "summary": "Count UInt64, Sum Float64, ValueAtQuantiles Nested(Quantile Float64, Value Float64),",
    }[kind]
    tail = {"gauge": "", "sum": "AggregationTemporality Int32, IsMonotonic Boolean,",
            "histogram": "Flags UInt32, Min Float64, Max Float64, AggregationTemporality Int32,",
            "exponential_histogram": "Flags UInt32, Min Float64, Max Float64, AggregationTemporality Int32,",
            "summary": "Flags UInt32,"}[kind]
    order = ("(ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)"
             if time_type == "DateTime" and not json_mode
             else "(ServiceName, MetricName, toUnixTimestamp64Nano(TimeUnix))" if json_mode
             else "(ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))")
    return f"""CREATE TABLE IF NOT EXISTS {table} (
    ResourceAttributes {attr} CODEC(ZSTD(1)), ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)), ScopeVersion String CODEC(ZSTD(1)), ScopeAttributes {attr} CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)), ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)), MetricName {metric_name} CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)), MetricUnit String CODEC(ZSTD(1)), Attributes {attr} CODEC(ZSTD(1)),
    StartTimeUnix {time_type} CODEC(Delta, ZSTD(1)), TimeUnix {time_type} CODEC(Delta, ZSTD(1)),
    {specific}
    Exemplars Nested (FilteredAttributes {attr}, TimeUnix {time_type}, Value Float64, SpanId String,
                      TraceId String) CODEC(ZSTD(1)),
    {tail}
    INDEX idx_dummy_time TimeUnix TYPE minmax GRANULARITY 1
) ENGINE = MergeTree() PARTITION BY toDate(TimeUnix) ORDER BY {order}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""


def create_exporter_tables(store, json_mode: bool = False, variant: str = "current", tables: dict | None = None,
                           time_type: str = "DateTime64(9)", metric_name: str = "String") -> dict[str, str]:
    """Create every table the exporter creates with ``create_schema: true``; returns kind → table name."""
    names = {"traces": "otel_traces", "gauge": "otel_metrics_gauge", "sum": "otel_metrics_sum",
             "histogram": "otel_metrics_histogram",
             "exponential_histogram": "otel_metrics_exponential_histogram", "summary": "otel_metrics_summary",
             **(tables or {})}
    for stmt in traces_ddl(names["traces"], variant, json_mode):
        store.command(stmt)
    for kind in ("gauge", "sum", "histogram", "exponential_histogram", "summary"):
        store.command(metrics_ddl(kind, names[kind], time_type, metric_name, json_mode))
    return names
