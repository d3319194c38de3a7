"""OTLP ``AnyValue`` / ``KeyValue`` → strings, as the collector-contrib clickhouseexporter stores attribute values
(pdata ``AsString``): strings as is, bools ``true``/``false``, ints in decimal, doubles in shortest round-trip form
with integral values without ``.0`` (ES6 number-to-string), bytes base64, arrays and maps compact JSON.
"""

from __future__ import annotations

import base64
import json
import math

from vllm_otel_collector.otlp.base import Limits


def _num(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
    if v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def _raw(av):
    kind = av.WhichOneof("value")
    if kind == "string_value":
        return av.string_value
    if kind == "int_value":
        return av.int_value
    if kind == "double_value":
        v = av.double_value
        return v if math.isfinite(v) else _num(v)
    if kind == "bool_value":
        return av.bool_value
    if kind == "bytes_value":
        return base64.b64encode(av.bytes_value).decode()
    if kind == "array_value":
        return [_raw(x) for x in av.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in av.kvlist_value.values}
    return None


def value_str(av) -> str:
    """Stringify an OTLP ``AnyValue`` the way the clickhouseexporter stores it (see module docstring)."""
    kind = av.WhichOneof("value")
    if kind == "string_value":
        return av.string_value
    if kind == "int_value":
        return str(av.int_value)
    if kind == "bool_value":
        return "true" if av.bool_value else "false"
    if kind == "double_value":
        return _num(av.double_value)
    if kind is None:
        return ""
    raw = _raw(av)
    return raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"), ensure_ascii=False)


def other_str(av, kind: str | None) -> str:
    """A non-string ``AnyValue`` of oneof ``kind`` as a string (ints and bools without a second ``WhichOneof``)."""
    if kind == "int_value":
        return str(av.int_value)
    if kind == "bool_value":
        return "true" if av.bool_value else "false"
    return value_str(av)


def attrs_map(kvs, limits: Limits) -> tuple[dict[str, str], bool]:
    """Repeated ``KeyValue`` → ``{key: string value}``; returns (map, truncated?). Hot path: one dict
    comprehension, string values taken as is, truncation checked on the finished map."""
    truncated = False
    if len(kvs) > limits.max_attributes:
        kvs = kvs[: limits.max_attributes]
        truncated = True
    out = {kv.key: (v.string_value if (k := (v := kv.value).WhichOneof("value")) == "string_value"
                    else other_str(v, k)) for kv in kvs}
    cap = limits.max_value_chars
    if out and max(map(len, out.values())) > cap:
        out = {key: val[:cap] for key, val in out.items()}
        truncated = True
    return out, truncated
