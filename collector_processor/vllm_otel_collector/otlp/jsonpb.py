"""OTLP/JSON → protobuf bytes (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding).

OTLP/JSON differs from the protobuf JSON mapping in one point that matters here: trace and span ids are hex
strings, not base64. :func:`json_to_protobuf` rewrites them, then parses with ``google.protobuf.json_format`` (enums
as integers or names, int64 as strings or numbers, unknown fields ignored). Each signal names its id fixer
(:func:`fix_trace_ids`, :func:`fix_metric_ids`).
"""

from __future__ import annotations

import base64
import binascii
import json

from google.protobuf import json_format

from vllm_otel_collector.otlp.base import MalformedRequest


def _hex_to_b64(value) -> str:
    """Hex id → base64 as protobuf JSON expects. Bad hex → "" (then rejected by id validation)."""
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except (ValueError, binascii.Error):
        return ""


def _fix_ids(obj: dict, keys: tuple[str, ...]) -> None:
    for k in keys:
        for name in (k, _snake(k)):
            if name in obj:
                obj[name] = _hex_to_b64(obj[name])


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


def _items(obj, key: str) -> list:
    if not isinstance(obj, dict):
        return []
    value = obj.get(key, obj.get(_snake(key)))
    return value if isinstance(value, list) else []


def fix_trace_ids(doc: dict) -> None:
    """Rewrite span, parent and link ids of an ``ExportTraceServiceRequest`` document in place."""
    for rs in _items(doc, "resourceSpans"):
        for ss in _items(rs, "scopeSpans"):
            for span in _items(ss, "spans"):
                if isinstance(span, dict):
                    _fix_ids(span, ("traceId", "spanId", "parentSpanId"))
                    for link in _items(span, "links"):
                        if isinstance(link, dict):
                            _fix_ids(link, ("traceId", "spanId"))


def fix_metric_ids(doc: dict) -> None:
    """Rewrite exemplar ids of an ``ExportMetricsServiceRequest`` document in place."""
    for rm in _items(doc, "resourceMetrics"):
        for sm in _items(rm, "scopeMetrics"):
            for metric in _items(sm, "metrics"):
                if not isinstance(metric, dict):
                    continue
                for data in metric.values():
                    for point in _items(data, "dataPoints"):
                        for ex in _items(point, "exemplars"):
                            if isinstance(ex, dict):
                                _fix_ids(ex, ("traceId", "spanId"))


def json_to_protobuf(signal, body: bytes) -> bytes:
    """Decode an OTLP/JSON request of ``signal`` (``request_type``, ``fix_json_ids``, ``name``; see
    :class:`vllm_otel_collector.receivers.consumer.Signal`) to protobuf bytes.

    Raises:
        MalformedRequest: not JSON, or not shaped like the request message.
    """
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("top level is not an object")
        signal.fix_json_ids(doc)
        message = json_format.ParseDict(doc, signal.request_type(), ignore_unknown_fields=True)
        return message.SerializeToString()
    except (ValueError, TypeError, AttributeError, RecursionError, json_format.ParseError) as exc:
        raise MalformedRequest(f"not an OTLP/JSON {signal.name} request: {str(exc).splitlines()[0][:200]}") from None


def response_to_json(resp) -> bytes:
    """OTLP/JSON response body (lowerCamelCase field names)."""
    return json_format.MessageToJson(resp, indent=None).encode()
