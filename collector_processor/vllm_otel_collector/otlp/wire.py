"""Minimal protobuf wire-format splitting, used only when a request fails to parse as a whole.

A proto3 ``string`` field holding invalid UTF-8 makes the whole ``ExportTraceServiceRequest`` unparseable. To reject
just the offending spans (OTLP ``partial_success``) instead of the entire request, the request is re-read one level at
a time: :func:`fields` lists the top-level fields of a message body without decoding them, so each ``ResourceSpans``
/ ``ScopeSpans`` / ``Span`` can be parsed on its own. Source: protobuf encoding guide
(https://protobuf.dev/programming-guides/encoding/).
"""

from __future__ import annotations


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated varint/length, bad wire type)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def fields(buf: bytes) -> list[tuple[int, int, bytes | int]]:
    """Split a message body into ``(field_number, wire_type, value)``; value is bytes for LEN fields, else int/bytes.

    Raises:
        WireError: malformed framing.
    """
    out = []
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        number, wtype = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wtype == 0:
            value, pos = _varint(buf, pos)
        elif wtype == 1:
            if pos + 8 > n:
                raise WireError("truncated fixed64")
            value, pos = buf[pos:pos + 8], pos + 8
        elif wtype == 2:
            length, pos = _varint(buf, pos)
            if pos + length > n:
                raise WireError("truncated length-delimited field")
            value, pos = buf[pos:pos + length], pos + length
        elif wtype == 5:
            if pos + 4 > n:
                raise WireError("truncated fixed32")
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wtype}")
        out.append((number, wtype, value))
    return out


def encode_field(number: int, payload: bytes) -> bytes:
    """Encode one length-delimited field (used to rebuild a message from the parts that parsed)."""
    out = bytearray()
    for v in ((number << 3) | 2, len(payload)):
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
    return bytes(out) + payload
