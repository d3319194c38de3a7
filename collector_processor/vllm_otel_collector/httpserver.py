"""The HTTP/1.1 server both HTTP endpoints use (OTLP/HTTP :4318, read API :4319): uvicorn with h11 on one asyncio
event-loop thread per server, serving a small ASGI app whose handlers are plain synchronous functions run on a bounded
thread pool.

uvicorn/h11 do the protocol: ``Transfer-Encoding: chunked``, Content-Length validation (a request whose body ends
before its Content-Length is never handed on), pipelining, header size (16 KiB), keep-alive; the TLS handshake runs on
the event loop, per connection, so an idle or slow TCP connection never holds up another one. On top of that this
module adds what an exposed collector needs:

* a TLS handshake deadline (``tls_handshake_timeout_s``; uvicorn leaves asyncio's 60 s),
* a cap on open connections (``max_connections``; beyond it uvicorn answers 503 and closes),
* a deadline for a request's headers: ``header_timeout_s`` after connecting, ``keep_alive_s`` after the previous
  response (an idle or trickling connection is closed),
* :meth:`Endpoint.preflight` runs on the headers alone, before any byte of the body is read (auth, path, method,
  content type), so an unauthenticated client cannot make the server buffer a body,
* a body limit (413 for a declared Content-Length above it, or as soon as a chunked body grows past it), a body
  deadline (``body_timeout_s``, 408), a cap on the bytes of all bodies buffered at once (``max_buffered_bytes``: a
  request that would pass it gets 503 + ``Retry-After`` at once; nobody waits for a slow client's slot),
* a client that half-closes before its body is complete gets 400 and nothing is handed on; so does a request with
  both Content-Length and Transfer-Encoding (RFC 9112 §6.3, a request-smuggling shape; the connection is closed).

Binding errors become a one-line :class:`UserError` naming the port. This module holds the server: the h11 protocol
subclass (header and keep-alive deadlines, half-close), the event loop with the TLS handshake deadline, binding and
the lifecycle; the ASGI app with the per-request limits and :class:`Request` / :class:`Response` / :class:`Endpoint`
are in :mod:`vllm_otel_collector.http_app` (re-exported here).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import threading

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.http_app import AsgiApp, Endpoint, Request, Response

__all__ = ["SERVER_NAME", "Endpoint", "HttpServer", "Request", "Response"]

SERVER_NAME = "vllm-otel-collector"


def _protocol_class(header_timeout_s: float, keep_alive_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's headers and a 400 for a half-closed short body."""

    class _Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm(header_timeout_s)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm(keep_alive_s)

        def _arm(self, seconds: float) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, self._expire, self.cycle)

        def _expire(self, cycle) -> None:
            # close when no new request has started since the deadline was armed
            if self.cycle is cycle and (cycle is None or cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

        def eof_received(self):
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                return None  # idle: close
            if cycle.more_body:
                if not cycle.response_started:  # half-closed before the body was complete: hand nothing on
                    self.send_400_response("request body ended before its Content-Length or last chunk")
                return None
            # a complete request, then a half-close: answer it, then close (not possible under TLS)
            cycle.keep_alive = False
            return self.scheme == "http" or None

        def connection_lost(self, exc) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

    return _Protocol


def _loop_class(tls_handshake_timeout_s: float) -> type[asyncio.AbstractEventLoop]:
    """asyncio's loop with a TLS handshake deadline for the servers it creates (uvicorn passes none)."""

    class _Loop(asyncio.SelectorEventLoop):
        async def create_server(self, *args, **kwargs):
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", tls_handshake_timeout_s)
            return await super().create_server(*args, **kwargs)

    return _Loop


def _bind(what: str, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP (0 would leave
    # Nagle on, and every kept-alive response would wait ~40 ms for the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"cannot listen for {what} on {host}:{port}: port {port} is already in use") from None
        raise UserError(f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class HttpServer:
    """Serve ``endpoint`` on ``host:port`` in a background thread (uvicorn, h11, asyncio loop).

    Args:
        what: name used in error messages and thread names ("OTLP/HTTP", "read API").
        endpoint: the :class:`Endpoint`.
        tls: ``(cert_pem_path, key_pem_path)`` to serve HTTPS.
        workers: threads running ``endpoint.handle``.
        max_connections: open connections served at once; a request on a connection beyond it gets 503.
        header_timeout_s: a new connection must send a request's headers within this many seconds.
        keep_alive_s: an idle kept-alive connection must send its next request's headers within this many seconds.
        body_timeout_s: a request's body must arrive completely within this many seconds of its headers (408).
        tls_handshake_timeout_s: a TLS client must finish its handshake within this many seconds (then closed).
        max_buffered_bytes: bytes of request bodies held at once, all connections together (at least one
            ``endpoint.max_body_bytes``); beyond it a request gets 503 + ``Retry-After``.

    Raises:
        UserError: port in use / not permitted, or unreadable TLS files.
    """

    def __init__(self, what: str, host: str, port: int, endpoint: Endpoint, tls: tuple[str, str] | None = None, *,
                 workers: int = 8, max_connections: int = 1024, header_timeout_s: float = 10.0,
                 keep_alive_s: float = 60.0, body_timeout_s: float = 60.0, max_buffered_bytes: int = 256 << 20,
                 tls_handshake_timeout_s: float = 10.0):
        self.what = what
        self._sock = _bind(what, host, port)
        self.port = self._sock.getsockname()[1]
        self._app = AsgiApp(endpoint, workers, body_timeout_s, max_buffered_bytes, what)
        config = uvicorn.Config(
            self._app, http=_protocol_class(header_timeout_s, keep_alive_s), loop="none", lifespan="off",
            ws="none", interface="asgi3", log_config=None, access_log=False, server_header=False,
            headers=[("server", SERVER_NAME)], limit_concurrency=max_connections,
            timeout_keep_alive=int(keep_alive_s) or 1, timeout_graceful_shutdown=5,
            ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None)
        try:
            config.load()
        except (OSError, ssl.SSLError) as exc:
            self._sock.close()
            raise UserError(f"cannot load TLS certificate/key for {what}: {exc}") from None
        self._server = uvicorn.Server(config)
        self._loop_class = _loop_class(tls_handshake_timeout_s)
        self._thread = threading.Thread(target=self._serve, name=f"http-{what}", daemon=True)

    def _serve(self) -> None:
        with asyncio.Runner(loop_factory=self._loop_class) as runner:
            runner.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> None:
        """Start serving (the socket is already listening: connections made before this wait in its backlog)."""
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, close idle connections, let in-flight requests finish (5 s at most), close the socket."""
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout_s)
        self._sock.close()
        self._app.pool.shutdown(wait=False)


# uvicorn logs each bad request line at WARNING; a collector facing the network answers them and moves on.
if logging.getLogger("uvicorn.error").level == logging.NOTSET:
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
