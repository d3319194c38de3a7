"""OTLP/HTTP receiver: ``POST /v1/traces`` and ``POST /v1/metrics``, protobuf or JSON bodies, optional gzip, plain or
chunked transfer (served by :class:`~vllm_otel_collector.httpserver.HttpServer`: uvicorn + h11).

Checked on the headers, before any byte of the body is read: 404 unknown path; 405 not POST; 401 missing/wrong bearer
token (scheme case-insensitive, RFC 7235); 415 unsupported Content-Type or Content-Encoding; 413 declared
Content-Length over ``max_message_bytes``. Then the body: 413 when a chunked body grows past the limit; 408 when it
does not arrive within the body deadline; 400 when the client half-closes before the body is complete (nothing is
stored). Then the :class:`~vllm_otel_collector.receivers.consumer.Consumer`'s answer (OTLP spec, "OTLP/HTTP
Response"): 200 with an ``Export*ServiceResponse`` in the request's encoding (``partial_success`` for rejected
items); 400 undecodable body (bad protobuf/JSON, bad gzip: every gzip member must end with its CRC32/ISIZE trailer,
concatenated members are all decoded); 413 a request with more rows than the queue can ever hold (the client must
split it; not retryable); 503 + ``Retry-After`` when the spool/queue is full or the collector is shutting down
(retryable); 500 unexpected failure (the server keeps serving). Error bodies are a ``google.rpc.Status`` (protobuf
requests) or its JSON form.
"""

from __future__ import annotations

import json
import zlib

from google.rpc import status_pb2

from vllm_otel_collector.httpserver import HttpServer, Request, Response
from vllm_otel_collector.otlp.jsonpb import response_to_json
from vllm_otel_collector.receivers.common import token_ok
from vllm_otel_collector.receivers.consumer import (
    BY_HTTP_PATH,
    CannotFitError,
    Consumer,
    PermanentError,
    RetryableError,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
#: HTTP status → google.rpc.Code of the error body
_GRPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 408: 4, 413: 8, 415: 3, 500: 13, 503: 14}


def _ctype(req: Request) -> str:
    return (req.headers.get("content-type") or PROTOBUF).split(";")[0].strip().lower()


class OtlpHttpEndpoint:
    """The OTLP/HTTP :class:`~vllm_otel_collector.httpserver.Endpoint` over a :class:`Consumer`.

    Args:
        consumer: where decoded requests go (the pipeline).
        token: bearer token required in ``Authorization`` (None = no auth).
        max_message_bytes: largest body, before and after gunzip (bytes).
    """

    def __init__(self, consumer: Consumer, token: str | None, max_message_bytes: int):
        self.consumer, self.token, self.max_body_bytes = consumer, token, max_message_bytes

    def error(self, req: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        code = _GRPC_CODES.get(status, 2)
        if _ctype(req) == JSON:
            return Response(status, json.dumps({"code": code, "message": message}).encode(), JSON, headers or {})
        body = status_pb2.Status(code=code, message=message).SerializeToString()
        return Response(status, body, PROTOBUF, headers or {})

    def preflight(self, req: Request) -> Response | None:
        if BY_HTTP_PATH.get(req.path) is None:
            return self.error(req, 404, f"unknown path {req.path[:100]}")
        if req.method != "POST":
            return self.error(req, 405, "use POST", {"Allow": "POST"})
        if not token_ok(self.token, req.headers.get("authorization")):
            return self.error(req, 401, "missing or invalid bearer token",
                              {"WWW-Authenticate": 'Bearer realm="vllm-otel"'})
        ctype = _ctype(req)
        if ctype not in (PROTOBUF, JSON):
            return self.error(req, 415, f"unsupported Content-Type {ctype[:80]!r}; use {PROTOBUF} or {JSON}")
        encoding = (req.headers.get("content-encoding") or "").strip().lower()
        if encoding not in ("", "identity", "gzip"):
            return self.error(req, 415, f"unsupported Content-Encoding {encoding[:40]!r}")
        return None

    def handle(self, req: Request) -> Response:
        signal = BY_HTTP_PATH[req.path]
        is_json = _ctype(req) == JSON
        body = req.body
        try:
            if (req.headers.get("content-encoding") or "").strip().lower() == "gzip":
                try:
                    body = gunzip(body, self.max_body_bytes)
                except ValueError as exc:
                    raise self.consumer.malformed(signal, str(exc)) from None
            result = self.consumer.consume(signal, body, "json" if is_json else "protobuf")
        except CannotFitError as exc:
            return self.error(req, 413, str(exc))
        except PermanentError as exc:
            return self.error(req, 400, str(exc))
        except RetryableError as exc:
            return self.error(req, 503, f"retry later: {exc}", {"Retry-After": str(exc.retry_after_s)})
        resp = signal.response(result)
        if is_json:
            return Response(200, response_to_json(resp), JSON)
        return Response(200, resp.SerializeToString(), PROTOBUF)


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body of one or more concatenated members (RFC 1952 §2.2), zero padding after a member
    allowed; at most ``limit`` bytes of output.

    Raises:
        ValueError: not gzip, a member without its complete trailer (CRC32 + ISIZE, checked by zlib), CRC mismatch,
            or output beyond ``limit`` (the message says which).
    """
    if not body:
        raise ValueError("bad gzip body: empty")
    out: list[bytes] = []
    size = 0
    data = body
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise ValueError(f"bad gzip body: {exc}") from None
        size += len(chunk)
        if size > limit:
            raise ValueError(f"gzip body expands beyond {limit} bytes")
        if not d.eof:
            raise ValueError("bad gzip body: truncated (a member ends before its CRC32/ISIZE trailer)")
        out.append(chunk)
        data = d.unused_data.lstrip(b"\0")
    return b"".join(out)


def http_receiver(consumer: Consumer, host: str, port: int, token: str | None = None,
                  tls: tuple[str, str] | None = None, max_message_bytes: int = 16 << 20,
                  **server_options) -> HttpServer:
    """Build (not start) the OTLP/HTTP server. ``server_options`` go to :class:`HttpServer` (``workers``,
    ``max_connections``, ``header_timeout_s``, ``keep_alive_s``, ``body_timeout_s``).

    Raises:
        UserError: the port cannot be bound, or unreadable TLS files.
    """
    return HttpServer("OTLP/HTTP", host, port, OtlpHttpEndpoint(consumer, token, max_message_bytes), tls=tls,
                      **server_options)
