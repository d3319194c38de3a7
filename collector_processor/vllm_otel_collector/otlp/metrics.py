"""OTLP metrics → ``otel_metrics_gauge`` / ``otel_metrics_sum`` / ``otel_metrics_histogram`` /
``otel_metrics_exponential_histogram`` columns.

Column names and meanings follow the collector-contrib clickhouseexporter: one row per data point; times are ints of
nanoseconds since the epoch (DateTime64(9)); ``Value`` is the point's double or int as Float64; attribute values are
stringified exactly as for spans (:func:`vllm_otel_collector.otlp.values.value_str`). Summaries are not stored: their
points are counted as rejected with a message. Per the validation table (:mod:`.validation`) a point is rejected when
``time_unix_nano`` is 0 (OTLP requires it) or ≥ 2^63 ns, ``start_time_unix_nano`` ≥ 2^63 ns, one of its exemplars
has a time ≥ 2^63 ns or ids that are neither empty nor 16/8 bytes, or (exponential histograms) its ``scale`` is
outside -10..20.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from vllm_otel_collector.otlp.base import Limits, MalformedRequest, Payload
from vllm_otel_collector.otlp.validation import exemplar_error, scale_error, time_error
from vllm_otel_collector.otlp.values import attrs_map

_COMMON = ("ResourceAttributes", "ResourceSchemaUrl", "ScopeName", "ScopeVersion", "ScopeAttributes",
           "ScopeDroppedAttrCount", "ScopeSchemaUrl", "ServiceName", "MetricName", "MetricDescription", "MetricUnit",
           "Attributes", "StartTimeUnix", "TimeUnix", "Flags", "Exemplars.FilteredAttributes", "Exemplars.TimeUnix",
           "Exemplars.Value", "Exemplars.SpanId", "Exemplars.TraceId")
METRIC_TABLES = {
    "otel_metrics_gauge": _COMMON + ("Value",),
    "otel_metrics_sum": _COMMON + ("Value", "AggregationTemporality", "IsMonotonic"),
    "otel_metrics_histogram": _COMMON + ("Count", "Sum", "BucketCounts", "ExplicitBounds", "Min", "Max",
                                         "AggregationTemporality"),
    "otel_metrics_exponential_histogram": _COMMON + ("Count", "Sum", "Scale", "ZeroCount", "PositiveOffset",
                                                     "PositiveBucketCounts", "NegativeOffset",
                                                     "NegativeBucketCounts", "Min", "Max", "AggregationTemporality"),
}


@dataclass
class MetricBatch:
    """Columns per metrics table for one request, plus the request bytes and rejected data point count."""

    tables: dict[str, dict[str, list]]
    clean_body: bytes
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(cols["TimeUnix"]) for cols in self.tables.values())

    def message(self) -> str:
        """The ``partial_success.error_message`` text."""
        return "; ".join(self.errors[:5])

    def inserts(self) -> list[tuple[str, Payload]]:
        """One insert per metrics table that received points, in :data:`METRIC_TABLES` order."""
        return [(table, cols) for table, cols in self.tables.items() if cols["TimeUnix"]]

    def span_columns(self, interests=None) -> None:
        """Metrics carry no spans."""
        return None


def _number(p) -> float:
    return float(p.as_int) if p.WhichOneof("value") == "as_int" else p.as_double


def metrics_from_bytes(body: bytes, limits: Limits = Limits()) -> MetricBatch:
    """Parse + convert one protobuf ``ExportMetricsServiceRequest``. Raises :class:`MalformedRequest`."""
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise MalformedRequest(f"not an OTLP ExportMetricsServiceRequest: {exc}") from None
    return convert_metrics(request, limits, body)


def convert_metrics(request: ExportMetricsServiceRequest, limits: Limits = Limits(),
                    body: bytes | None = None) -> MetricBatch:
    """Convert a parsed metrics request (see module docstring)."""
    tables = {t: {c: [] for c in cols} for t, cols in METRIC_TABLES.items()}
    rejected, errors = 0, []
    for rm in request.resource_metrics:
        res_attrs, _ = attrs_map(rm.resource.attributes, limits)
        service = res_attrs.get("service.name", "")
        for sm in rm.scope_metrics:
            scope = sm.scope
            scope_attrs, _ = attrs_map(scope.attributes, limits)
            common = (res_attrs, rm.schema_url, scope.name, scope.version, scope_attrs,
                      scope.dropped_attributes_count, sm.schema_url, service)
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind == "gauge":
                    table, points = "otel_metrics_gauge", metric.gauge.data_points
                elif kind == "sum":
                    table, points = "otel_metrics_sum", metric.sum.data_points
                elif kind == "histogram":
                    table, points = "otel_metrics_histogram", metric.histogram.data_points
                elif kind == "exponential_histogram":
                    table, points = "otel_metrics_exponential_histogram", metric.exponential_histogram.data_points
                else:
                    n = len(getattr(metric, kind).data_points) if kind else 0
                    rejected += n
                    errors.append(f"metric {metric.name!r}: {kind or 'empty'} points are not stored")
                    continue
                cols = tables[table]
                for p in points:
                    if p.time_unix_nano == 0:
                        rejected += 1
                        errors.append(f"metric {metric.name!r}: data point without time_unix_nano")
                        continue
                    err = (time_error("time_unix_nano", p.time_unix_nano)
                           or time_error("start_time_unix_nano", p.start_time_unix_nano)
                           or next(filter(None, map(exemplar_error, p.exemplars)), None)
                           or (scale_error(p.scale) if kind == "exponential_histogram" else None))
                    if err:
                        rejected += 1
                        errors.append(f"metric {metric.name!r}: data point {err}")
                        continue
                    for name, value in zip(_COMMON[:8], common):
                        cols[name].append(value)
                    cols["MetricName"].append(metric.name)
                    cols["MetricDescription"].append(metric.description)
                    cols["MetricUnit"].append(metric.unit)
                    cols["Attributes"].append(attrs_map(p.attributes, limits)[0])
                    cols["StartTimeUnix"].append(p.start_time_unix_nano)
                    cols["TimeUnix"].append(p.time_unix_nano)
                    cols["Flags"].append(p.flags)
                    ex = p.exemplars
                    cols["Exemplars.FilteredAttributes"].append([attrs_map(e.filtered_attributes, limits)[0] for e in ex])
                    cols["Exemplars.TimeUnix"].append([e.time_unix_nano for e in ex])
                    cols["Exemplars.Value"].append([_number(e) for e in ex])
                    cols["Exemplars.SpanId"].append([e.span_id.hex() for e in ex])
                    cols["Exemplars.TraceId"].append([e.trace_id.hex() for e in ex])
                    if kind == "gauge":
                        cols["Value"].append(_number(p))
                    elif kind == "sum":
                        cols["Value"].append(_number(p))
                        cols["AggregationTemporality"].append(int(metric.sum.aggregation_temporality))
                        cols["IsMonotonic"].append(bool(metric.sum.is_monotonic))
                    elif kind == "exponential_histogram":
                        cols["Count"].append(p.count)
                        cols["Sum"].append(p.sum)
                        cols["Scale"].append(p.scale)
                        cols["ZeroCount"].append(p.zero_count)
                        cols["PositiveOffset"].append(p.positive.offset)
                        cols["PositiveBucketCounts"].append(list(p.positive.bucket_counts))
                        cols["NegativeOffset"].append(p.negative.offset)
                        cols["NegativeBucketCounts"].append(list(p.negative.bucket_counts))
                        cols["Min"].append(p.min)
                        cols["Max"].append(p.max)
                        cols["AggregationTemporality"].append(
                            int(metric.exponential_histogram.aggregation_temporality))
                    else:
                        cols["Count"].append(p.count)
                        cols["Sum"].append(p.sum)
                        cols["BucketCounts"].append(list(p.bucket_counts))
                        cols["ExplicitBounds"].append(list(p.explicit_bounds))
                        cols["Min"].append(p.min)
                        cols["Max"].append(p.max)
                        cols["AggregationTemporality"].append(int(metric.histogram.aggregation_temporality))
    clean = body if body is not None else request.SerializeToString()
    return MetricBatch(tables=tables, clean_body=clean, rejected=rejected, errors=errors)
