"""The ASGI application :class:`~vllm_otel_collector.httpserver.HttpServer` serves, and what handlers see.

:class:`Request` / :class:`Response` are the handlers' view of HTTP; an :class:`Endpoint` answers them. :class:`AsgiApp`
applies the per-request limits (see :mod:`vllm_otel_collector.httpserver` for the whole list): the smuggling-shape
400, :meth:`Endpoint.preflight` on the headers alone, the body limit (413), the body deadline (408), the cap on bytes of
all bodies buffered at once (503 + ``Retry-After``), then ``Endpoint.handle`` on a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

# the server's logger name, as before this module was split off httpserver.py (log configuration keeps working)
log = logging.getLogger("vllm_otel_collector.httpserver")

#: An early answer (before the body was read) keeps the connection open when the unread body is at most this long:
#: h11 discards it; a longer or chunked one closes the connection instead of reading it.
_DRAIN_MAX_BYTES = 1 << 20


@dataclass
class Request:
    """One HTTP request as handlers see it.

    Attributes:
        method: ``GET``, ``POST``, ...
        path: URL path, percent-decoded, without the query.
        query: URL query parameters (last value wins; blank values kept).
        headers: header name (lower case) → value (latin-1; repeated headers joined with ``", "``).
        body: the request body, after Transfer-Encoding (empty until read; Content-Encoding is the handler's).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    """What a handler answers: ``status``, ``body``, ``content_type`` and extra ``headers``."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class Endpoint(Protocol):
    """What :class:`HttpServer` serves.

    ``preflight`` and ``error`` run on the event loop: they must be quick and never block. ``handle`` runs on a
    worker thread and may block (store queries, spool writes). An exception from ``handle`` answers 500 (logged).
    """

    #: largest request body accepted (bytes, after Transfer-Encoding, before Content-Encoding)
    max_body_bytes: int

    def preflight(self, request: Request) -> Response | None:
        """Answer from the headers alone (e.g. 401, 404, 415), or ``None`` to read the body and call ``handle``."""
        ...

    def handle(self, request: Request) -> Response:
        """Answer a request whose body has been read completely."""
        ...

    def error(self, request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        """An error answer in the endpoint's format (413, 408, 503 from the server itself)."""
        ...


class _Disconnected(Exception):
    pass


class AsgiApp:
    """The ASGI application: headers → ``preflight`` → body (limits, deadline) → ``handle`` on the pool."""

    def __init__(self, endpoint: Endpoint, workers: int, body_timeout_s: float, max_buffered_bytes: int, what: str):
        self.endpoint, self.body_timeout_s, self.what = endpoint, body_timeout_s, what
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"http-{what}")
        self.max_buffered_bytes = max(max_buffered_bytes, endpoint.max_body_bytes)
        self.buffered = 0  # bytes of request bodies held right now (touched on the loop thread only)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name, value = k.decode("latin-1"), v.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = dict(urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        req = Request(scope["method"], scope["path"], query, headers)
        ep = self.endpoint
        declared = _content_length(headers)
        if declared is not None and "transfer-encoding" in headers:  # RFC 9112 §6.3: a smuggling shape
            return await _send(send, ep.error(req, 400, "both Content-Length and Transfer-Encoding"), close=True)
        try:
            resp = ep.preflight(req)
        except Exception:  # noqa: BLE001 - a failing check must not take the server down
            log.exception("%s: request check failed", self.what)
            resp = ep.error(req, 500, "internal error")
        if resp is not None:
            return await _send(send, resp, close=not _drainable(headers, declared))
        if declared is not None and declared > ep.max_body_bytes:
            return await _send(send, ep.error(req, 413, f"body over {ep.max_body_bytes} bytes"), close=True)
        held = [0]
        try:
            try:
                req.body = await self._read_body(receive, ep.max_body_bytes, time.monotonic() + self.body_timeout_s,
                                                 held)
            except _Disconnected:
                return  # nothing is handed on; the client is gone
            except OverflowError:
                return await _send(send, ep.error(req, 413, f"body over {ep.max_body_bytes} bytes"), close=True)
            except MemoryError:
                return await _send(send, ep.error(req, 503, "too many request bodies in flight, retry later",
                                                  {"Retry-After": "1"}), close=True)
            except asyncio.TimeoutError:
                return await _send(send, ep.error(req, 408, f"body not received within {self.body_timeout_s:g} s"),
                                   close=True)
            resp = await asyncio.get_running_loop().run_in_executor(self.pool, self._handle, req)
        finally:
            self.buffered -= held[0]
        await _send(send, resp)

    def _handle(self, req: Request) -> Response:
        try:
            return self.endpoint.handle(req)
        except Exception as exc:  # noqa: BLE001 - a failing handler must not take the server down
            log.exception("%s: unexpected error handling %s %s", self.what, req.method, req.path[:100])
            return self.endpoint.error(req, 500, f"internal error: {type(exc).__name__}")

    async def _read_body(self, receive, limit: int, deadline: float, held: list[int]) -> bytes:
        """The whole body, counted in ``held[0]`` and :attr:`buffered`; raises ``_Disconnected`` (client gone or
        body incomplete), ``OverflowError`` (over ``limit``), ``MemoryError`` (over ``max_buffered_bytes`` of all
        bodies together), ``asyncio.TimeoutError`` (past ``deadline``)."""
        parts, size = [], 0
        while True:
            msg = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            if msg["type"] != "http.request":
                raise _Disconnected
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise OverflowError
            if self.buffered + len(chunk) > self.max_buffered_bytes:
                raise MemoryError
            self.buffered += len(chunk)
            held[0] += len(chunk)
            parts.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(parts)


def _content_length(headers: dict[str, str]) -> int | None:
    try:
        return int(headers["content-length"])  # h11 has validated it
    except (KeyError, ValueError):
        return None


def _drainable(headers: dict[str, str], declared: int | None) -> bool:
    """Whether an unread body is short enough to be discarded on a kept-alive connection."""
    if "transfer-encoding" in headers or "expect" in headers:
        return False
    return declared is None or declared <= _DRAIN_MAX_BYTES


async def _send(send, resp: Response, close: bool = False) -> None:
    headers = [(b"content-type", resp.content_type.encode("latin-1")),
               (b"content-length", str(len(resp.body)).encode())]
    headers += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in resp.headers.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body, "more_body": False})
