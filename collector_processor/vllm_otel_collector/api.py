"""Read API on 127.0.0.1:4319: ``/healthz``, ``/readyz``, ``/metrics`` and routes registered by plug-ins.

A route handler has the signature ``handler(store, query: dict[str, str]) -> tuple[int, object]`` (HTTP status,
JSON-serialisable body); ``query`` holds the URL query parameters (last value wins). Handlers raising ``ValueError``
or ``UserError`` answer 400 with ``{"error": message}``; anything else 500 (logged). With a token configured every
route except ``/healthz`` and ``/readyz`` needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Callable

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.httpserver import HttpServer, QuietHandler
from vllm_otel_collector.receivers.common import token_ok

log = logging.getLogger(__name__)

RouteHandler = Callable[[object, dict[str, str]], tuple[int, object]]


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class _Handler(QuietHandler):
    def _json(self, status: int, body: object) -> None:
        self.send_body(status, json.dumps(body, default=_json_default).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        srv = self.server
        collector = srv.collector
        if path == "/healthz":
            return self._json(200, {"status": "ok"})
        if path == "/readyz":
            ready, detail = collector.readiness()
            return self._json(200 if ready else 503, {"ready": ready, **detail})
        if not token_ok(srv.token, self.headers.get("Authorization")):
            return self._json(401, {"error": "missing or invalid bearer token"})
        if path == "/metrics":
            return self.send_body(200, collector.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        handler = srv.routes.get(path)
        if handler is None:
            return self._json(404, {"error": f"no route {path[:100]}", "routes": sorted(srv.routes)})
        try:
            status, body = handler(collector.store, query)
        except (ValueError, UserError) as exc:
            return self._json(400, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a failing route must not take the API down
            log.exception("read API route %s failed", path)
            return self._json(500, {"error": f"internal error: {type(exc).__name__}"})
        self._json(status, body)

    do_HEAD = do_GET


def api_server(collector, host: str, port: int, routes: dict[str, RouteHandler], token: str | None = None,
               tls: tuple[str, str] | None = None) -> HttpServer:
    """Build (not start) the read API server; ``routes`` maps path (e.g. ``/api/v1/stats``) to handler.

    ``collector`` must provide ``store``, ``metrics`` (``SelfMetrics``) and ``readiness() -> (bool, dict)``.
    Raises ``UserError`` when the port cannot be bound.
    """
    return HttpServer("read API", host, port, _Handler, tls=tls, collector=collector, routes=routes, token=token)
