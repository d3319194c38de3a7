"""Read API on 127.0.0.1:4319: ``/healthz``, ``/readyz``, ``/metrics`` and routes registered by plug-ins (served by
:class:`~vllm_otel_collector.httpserver.HttpServer`: uvicorn + h11).

A route handler has the signature ``handler(store, query: dict[str, str]) -> tuple[int, object]`` (HTTP status,
JSON-serialisable body); ``query`` holds the URL query parameters (last value wins). Handlers raising ``ValueError``
or ``UserError`` answer 400 with ``{"error": message}``; anything else 500 (logged). With a token configured every
route except ``/healthz`` and ``/readyz`` needs ``Authorization: Bearer <token>`` (scheme in any case), checked before
anything else is read. Methods other than GET/HEAD: 405.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.httpserver import HttpServer, Request, Response
from vllm_otel_collector.receivers.common import token_ok

log = logging.getLogger(__name__)

RouteHandler = Callable[[object, dict[str, str]], tuple[int, object]]
JSON = "application/json"
_OPEN = ("/healthz", "/readyz")


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(body, default=_json_default).encode(), JSON, headers or {})


def _path(req: Request) -> str:
    return req.path.rstrip("/") or "/"


class ApiEndpoint:
    """The read API :class:`~vllm_otel_collector.httpserver.Endpoint`.

    Args:
        collector: provides ``store``, ``metrics`` (``SelfMetrics``) and ``readiness() -> (bool, dict)``.
        routes: path → :data:`RouteHandler`.
        token: bearer token (None = no auth).
    """

    max_body_bytes = 64 << 10  # GET requests carry no body; a stray one is read and ignored

    def __init__(self, collector, routes: dict[str, RouteHandler], token: str | None):
        self.collector, self.routes, self.token = collector, routes, token

    def error(self, req: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return _json(status, {"error": message}, headers)

    def preflight(self, req: Request) -> Response | None:
        if req.method not in ("GET", "HEAD"):
            return self.error(req, 405, "use GET", {"Allow": "GET, HEAD"})
        if _path(req) not in _OPEN and not token_ok(self.token, req.headers.get("authorization")):
            return self.error(req, 401, "missing or invalid bearer token",
                              {"WWW-Authenticate": 'Bearer realm="vllm-otel"'})
        return None

    def handle(self, req: Request) -> Response:
        path = _path(req)
        collector = self.collector
        if path == "/healthz":
            return _json(200, {"status": "ok"})
        if path == "/readyz":
            ready, detail = collector.readiness()
            return _json(200 if ready else 503, {"ready": ready, **detail})
        if path == "/metrics":
            return Response(200, collector.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        handler = self.routes.get(path)
        if handler is None:
            return _json(404, {"error": f"no route {path[:100]}", "routes": sorted(self.routes)})
        try:
            status, body = handler(collector.store, req.query)
        except (ValueError, UserError) as exc:
            return _json(400, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a failing route must not take the API down
            log.exception("read API route %s failed", path)
            return _json(500, {"error": f"internal error: {type(exc).__name__}"})
        return _json(status, body)


def api_server(collector, host: str, port: int, routes: dict[str, RouteHandler], token: str | None = None,
               tls: tuple[str, str] | None = None, **server_options) -> HttpServer:
    """Build (not start) the read API server; ``routes`` maps path (e.g. ``/api/v1/stats``) to handler.

    ``collector`` must provide ``store``, ``metrics`` (``SelfMetrics``) and ``readiness() -> (bool, dict)``;
    ``server_options`` go to :class:`HttpServer`. Raises ``UserError`` when the port cannot be bound.
    """
    return HttpServer("read API", host, port, ApiEndpoint(collector, routes, token), tls=tls,
                      **{"workers": 4, **server_options})
