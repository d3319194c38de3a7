"""OTLP ``AnyValue`` / ``KeyValue`` → strings, as the collector-contrib clickhouseexporter stores attribute values
(pdata ``Value.AsString``, ``pdata/pcommon/value.go``): strings as is, bools ``true``/``false``, ints in decimal,
doubles as Go's ``encoding/json`` prints them (``float64AsString``: shortest round-trip digits, positional for
1e-6 ≤ |v| < 1e21, else ``5e-7`` / ``1e+21``; NaN/±Inf as ``json: unsupported value: NaN`` / ``+Inf`` / ``-Inf``),
bytes base64, arrays and maps compact JSON (a non-finite double inside makes Go's ``json.Marshal`` fail: the value
is then ``''``, as the exporter stores it). Not reproduced: Go's HTML escaping of ``<``, ``>``, ``&`` inside arrays
and maps, and its sorting of map keys.
"""

from __future__ import annotations

import base64
import json
import math

from vllm_otel_collector.otlp.base import Limits


class _NotJson(ValueError):
    """A non-finite double inside an array or map: Go's ``json.Marshal`` fails on it."""


def es6(v: float) -> str:
    """A finite double as Go's ``encoding/json`` (and pdata ``AsString``) prints it: ES6 number-to-string.

    >>> es6(0.25), es6(4.0791000174067e-05), es6(5e-07), es6(1e21), es6(100.0), es6(-0.0)
    ('0.25', '0.000040791000174067', '5e-7', '1e+21', '100', '-0')
    """
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    text = repr(v)  # shortest round-trip digits
    sign = "-" if text[0] == "-" else ""
    mant, _, exp = text.lstrip("-").partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole.lstrip("0")) - (len(frac) - len(frac.lstrip("0")) if not whole.lstrip("0") else 0)
    point += int(exp or 0)  # value = 0.DIGITS x 10^point
    digits = digits.rstrip("0") or "0"
    if abs(v) < 1e-6 or abs(v) >= 1e21:
        e10 = point - 1
        return f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}e{'-' if e10 < 0 else '+'}" + (
            str(-e10) if e10 < 0 else f"{e10:02d}")
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _num(v: float) -> str:
    if math.isnan(v):
        return "json: unsupported value: NaN"
    if math.isinf(v):
        return "json: unsupported value: +Inf" if v > 0 else "json: unsupported value: -Inf"
    return es6(v)


def _json(obj) -> str:
    """Compact JSON of an attribute's raw value (strings by ``json.dumps``, doubles ES6)."""
    if isinstance(obj, float):
        return es6(obj)
    if isinstance(obj, list):
        return "[" + ",".join(map(_json, obj)) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_json(v)}" for k, v in obj.items()) + "}"
    return json.dumps(obj, ensure_ascii=False)


def _raw(av):
    kind = av.WhichOneof("value")
    if kind == "string_value":
        return av.string_value
    if kind == "int_value":
        return av.int_value
    if kind == "double_value":
        v = av.double_value
        if not math.isfinite(v):
            raise _NotJson(v)
        return v
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
    try:
        raw = _raw(av)
    except _NotJson:
        return ""
    return raw if isinstance(raw, str) else _json(raw)


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
