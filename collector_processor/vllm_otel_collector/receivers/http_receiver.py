"""OTLP/HTTP receiver: ``POST /v1/traces`` and ``POST /v1/metrics``, protobuf or JSON bodies, optional gzip.

Responses (OTLP spec, "OTLP/HTTP Response"): 200 with an ``Export*ServiceResponse`` in the request's encoding
(``partial_success`` for rejected items); 400 undecodable body; 401 missing/wrong bearer token; 404 unknown path;
405 not POST; 413 body over ``max_message_bytes``; 415 unsupported content type; 503 + ``Retry-After`` when the
spool/queue is full or the collector is shutting down (retryable); 500 unexpected failure (server keeps serving).
Error bodies are a ``google.rpc.Status`` (protobuf requests) or its JSON form.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib

from google.rpc import status_pb2

from vllm_otel_collector.convert import MalformedRequest
from vllm_otel_collector.httpserver import HttpServer, QuietHandler
from vllm_otel_collector.pipeline import Backpressure, Pipeline
from vllm_otel_collector.receivers.common import json_to_protobuf, response_for, response_to_json, token_ok

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PATHS = {"/v1/traces": "traces", "/v1/metrics": "metrics"}
_GRPC_CODES = {400: 3, 401: 16, 413: 8, 415: 3, 500: 13, 503: 14, 404: 5, 405: 12}


class _Handler(QuietHandler):
    server: object

    def _error(self, status: int, message: str, is_json: bool, headers: dict[str, str] | None = None) -> None:
        st = status_pb2.Status(code=_GRPC_CODES.get(status, 2), message=message)
        if is_json:
            body = json.dumps({"code": st.code, "message": message}).encode()
            self.send_body(status, body, JSON, headers)
        else:
            self.send_body(status, st.SerializeToString(), PROTOBUF, headers)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        ctype = (self.headers.get("Content-Type") or PROTOBUF).split(";")[0].strip().lower()
        is_json = ctype == JSON
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return self._error(400, "invalid Content-Length", is_json)
        cfg = self.server
        if length > cfg.max_message_bytes or length < 0:
            self.close_connection = True
            return self._error(413, f"body over {cfg.max_message_bytes} bytes", is_json)
        body = self.rfile.read(length)
        kind = _PATHS.get(self.path.split("?")[0])
        if kind is None:
            return self._error(404, f"unknown path {self.path[:100]}", is_json)
        if not token_ok(cfg.token, self.headers.get("Authorization")):
            return self._error(401, "missing or invalid bearer token", is_json,
                               {"WWW-Authenticate": 'Bearer realm="vllm-otel"'})
        if ctype not in (PROTOBUF, JSON):
            return self._error(415, f"unsupported Content-Type {ctype[:80]!r}; use {PROTOBUF} or {JSON}", is_json)
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        try:
            if encoding == "gzip":
                body = _gunzip(body, cfg.max_message_bytes)
            elif encoding not in ("", "identity"):
                return self._error(415, f"unsupported Content-Encoding {encoding[:40]!r}", is_json)
            if is_json:
                body = json_to_protobuf(kind, body)
            pipeline: Pipeline = cfg.pipeline
            batch = pipeline.accept_traces(body) if kind == "traces" else pipeline.accept_metrics(body)
        except MalformedRequest as exc:
            cfg.pipeline.metrics.malformed.labels(kind).inc()
            return self._error(400, str(exc), is_json)
        except Backpressure as exc:
            return self._error(503, f"retry later: {exc}", is_json, {"Retry-After": str(exc.retry_after_s)})
        except Exception as exc:  # noqa: BLE001 - nothing a client sends may take the server down
            log.exception("unexpected error handling an OTLP/HTTP %s request", kind)
            return self._error(500, f"internal error: {type(exc).__name__}", is_json)
        resp = response_for(kind, batch)
        if is_json:
            self.send_body(200, response_to_json(resp), JSON)
        else:
            self.send_body(200, resp.SerializeToString(), PROTOBUF)

    def do_GET(self) -> None:  # noqa: N802
        self._error(405, "use POST", False, {"Allow": "POST"})

    do_PUT = do_DELETE = do_GET


def _gunzip(body: bytes, limit: int) -> bytes:
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(body, limit + 1)
        if len(out) > limit:
            raise MalformedRequest(f"gzip body expands beyond {limit} bytes")
        return out
    except (zlib.error, gzip.BadGzipFile, EOFError) as exc:
        raise MalformedRequest(f"bad gzip body: {exc}") from None


def http_receiver(pipeline: Pipeline, host: str, port: int, token: str | None = None,
                  tls: tuple[str, str] | None = None, max_message_bytes: int = 16 << 20) -> HttpServer:
    """Build (not start) the OTLP/HTTP server. Raises ``UserError`` when the port cannot be bound."""
    return HttpServer("OTLP/HTTP", host, port, _Handler, tls=tls, pipeline=pipeline, token=token,
                      max_message_bytes=max_message_bytes)
