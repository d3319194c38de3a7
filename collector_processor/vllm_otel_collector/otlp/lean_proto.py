"""A wire-compatible "lean" view of ``ExportTraceServiceRequest`` for the hot path.

It is the same message tree except that ``Span.attributes`` and ``Span.Event.attributes`` are declared ``repeated bytes``
instead of ``repeated KeyValue``: parsing then hands each attribute over as its raw encoded ``KeyValue`` bytes, without building
one Python wrapper per key and value. Attribute conversion looks these bytes up in a bounded cache
(:func:`span_attributes`) — attributes such as model name, operation, finish reasons and small token counts repeat
across spans, so most lookups are one C-level dict access. The bytes on the wire are unchanged, so a lean message
serializes to exactly what the client sent (minus rejected spans).

Trade-off: a parse with the lean types does not validate UTF-8 inside attributes; :func:`span_attributes` decodes
each distinct attribute with the real ``KeyValue`` type (which does), and raises ``DecodeError`` for a bad one so the
span is rejected.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

_PACKAGE = "vllm_otel.lean"
CACHE_MAX_ENTRIES = 65536


def _build():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="vllm_otel/lean_trace.proto", package=_PACKAGE, syntax="proto3",
        dependency=[trace_pb2.DESCRIPTOR.name, trace_service_pb2.DESCRIPTOR.name])
    renames = {}
    for source, lean_name in ((trace_pb2.Span.Event, "LeanEvent"), (trace_pb2.Span, "LeanSpan"), (trace_pb2.ScopeSpans, "LeanScopeSpans"),
                              (trace_pb2.ResourceSpans, "LeanResourceSpans"),
                              (trace_service_pb2.ExportTraceServiceRequest, "LeanExportTraceServiceRequest")):
        msg = fdp.message_type.add()
        source.DESCRIPTOR.CopyToProto(msg)
        msg.name = lean_name
        del msg.nested_type[:]
        del msg.enum_type[:]
        renames["." + source.DESCRIPTOR.full_name] = f".{_PACKAGE}.{lean_name}"
    for msg in fdp.message_type:
        for field in msg.field:
            if msg.name in ("LeanSpan", "LeanEvent") and field.name == "attributes":
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                field.ClearField("type_name")
            elif field.type_name in renames:
                field.type_name = renames[field.type_name]
    pool = descriptor_pool.Default()
    try:
        pool.Add(fdp)
    except TypeError:  # already added (module reloaded)
        pass
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.LeanExportTraceServiceRequest"))


LeanExportTraceServiceRequest = _build()

_cache: dict[bytes, tuple[str, str]] = {}
_cache_get = _cache.__getitem__


def _decode(raw: bytes, stringify) -> tuple[str, str]:
    kv = KeyValue.FromString(raw)  # DecodeError on invalid UTF-8
    value = kv.value
    kind = value.WhichOneof("value")
    pair = (kv.key, value.string_value if kind == "string_value" else stringify(value, kind))
    if len(_cache) >= CACHE_MAX_ENTRIES:
        _cache.clear()
    _cache[raw] = pair
    return pair


def span_attributes(raws, stringify) -> dict[str, str]:
    """Raw ``KeyValue`` encodings → ``{key: string value}`` (``stringify(AnyValue, kind) -> str`` for non-strings).

    Raises ``google.protobuf.message.DecodeError`` for an undecodable attribute.
    """
    try:
        return dict(map(_cache_get, raws))
    except KeyError:
        return dict(_cache.get(raw) or _decode(raw, stringify) for raw in raws)
