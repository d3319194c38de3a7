"""What both receivers share: bearer-token check, OTLP/JSON id decoding, partial_success responses."""

from __future__ import annotations

import base64
import binascii
import hmac
import json

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from vllm_otel_collector.convert import MalformedRequest

REQUESTS = {"traces": ExportTraceServiceRequest, "metrics": ExportMetricsServiceRequest}


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """True when no token is configured, or ``authorization`` is exactly ``Bearer <expected>`` (constant time)."""
    if not expected:
        return True
    if not authorization:
        return False
    return hmac.compare_digest(authorization.encode(), f"Bearer {expected}".encode())


def response_for(kind: str, batch) -> object:
    """``Export*ServiceResponse`` with ``partial_success`` set when anything was rejected or truncated."""
    message = batch.message()
    if kind == "traces":
        resp = ExportTraceServiceResponse()
        if batch.rejected or message:
            resp.partial_success.rejected_spans = batch.rejected
            resp.partial_success.error_message = message
    else:
        resp = ExportMetricsServiceResponse()
        if batch.rejected or message:
            resp.partial_success.rejected_data_points = batch.rejected
            resp.partial_success.error_message = message
    return resp


def _hex_to_b64(value) -> str:
    """OTLP/JSON carries ids as hex; protobuf JSON expects base64. Bad hex → "" (rejected by id validation)."""
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


def _items(obj: dict, key: str) -> list:
    value = obj.get(key, obj.get(_snake(key)))
    return value if isinstance(value, list) else []


def json_to_protobuf(kind: str, body: bytes) -> bytes:
    """Decode an OTLP/JSON request (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding) to protobuf
    bytes: ids are hex strings, enums integers or names, int64 as strings or numbers.

    Raises:
        MalformedRequest: not JSON, or not shaped like the request message.
    """
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("top level is not an object")
        if kind == "traces":
            for rs in _items(doc, "resourceSpans"):
                for ss in _items(rs, "scopeSpans") if isinstance(rs, dict) else []:
                    for span in _items(ss, "spans") if isinstance(ss, dict) else []:
                        if isinstance(span, dict):
                            _fix_ids(span, ("traceId", "spanId", "parentSpanId"))
                            for link in _items(span, "links"):
                                if isinstance(link, dict):
                                    _fix_ids(link, ("traceId", "spanId"))
        else:
            for rm in _items(doc, "resourceMetrics"):
                for sm in _items(rm, "scopeMetrics") if isinstance(rm, dict) else []:
                    for metric in _items(sm, "metrics") if isinstance(sm, dict) else []:
                        if not isinstance(metric, dict):
                            continue
                        for data in metric.values():
                            if isinstance(data, dict):
                                for point in _items(data, "dataPoints"):
                                    for ex in _items(point, "exemplars") if isinstance(point, dict) else []:
                                        if isinstance(ex, dict):
                                            _fix_ids(ex, ("traceId", "spanId"))
        message = json_format.ParseDict(doc, REQUESTS[kind](), ignore_unknown_fields=True)
        return message.SerializeToString()
    except (ValueError, TypeError, AttributeError, RecursionError, json_format.ParseError) as exc:
        raise MalformedRequest(f"not an OTLP/JSON {kind} request: {str(exc).splitlines()[0][:200]}") from None


def response_to_json(resp) -> bytes:
    """OTLP/JSON response body (lowerCamelCase field names)."""
    return json_format.MessageToJson(resp, indent=None).encode()
