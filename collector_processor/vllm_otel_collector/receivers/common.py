"""What both receivers share: the bearer-token check, OTLP/JSON responses.

``response_for`` and ``json_to_protobuf`` taking a signal *name* remain only for the HTTP receiver until it moves to
the :mod:`~vllm_otel_collector.receivers.consumer` interface (``Signal.response``, ``Consumer.consume(...,
encoding="json")``).
"""

from __future__ import annotations

import hmac

from vllm_otel_collector.otlp import jsonpb
from vllm_otel_collector.otlp.jsonpb import response_to_json
from vllm_otel_collector.receivers.consumer import BY_NAME, ConsumeResult

__all__ = ["json_to_protobuf", "response_for", "response_to_json", "token_ok"]


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """True when no token is configured, or ``authorization`` is ``Bearer <expected>``: the scheme in any letter case
    and followed by one or more spaces (RFC 7235 §2.1: ``credentials = auth-scheme 1*SP token68``), the token
    compared exactly, in constant time."""
    if not expected:
        return True
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.lstrip(" ").encode("utf-8", "replace"),
                                                              expected.encode())


def response_for(kind: str, batch) -> object:
    """``Export*ServiceResponse`` for a converted batch of signal ``kind`` (see :meth:`Signal.response`)."""
    return BY_NAME[kind].response(ConsumeResult(batch.rejected, batch.message()))


def json_to_protobuf(kind: str, body: bytes) -> bytes:
    """OTLP/JSON request of signal ``kind`` → protobuf bytes. Raises ``MalformedRequest``."""
    return jsonpb.json_to_protobuf(BY_NAME[kind], body)
