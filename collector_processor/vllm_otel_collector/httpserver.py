"""A small threaded HTTP/1.1 server (stdlib ``http.server``) with optional TLS, shared by the OTLP/HTTP receiver and
the read API. Binding errors become a one-line :class:`UserError` naming the port."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vllm_otel_collector.errors import UserError


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class HttpServer:
    """Serve ``handler_cls`` on ``host:port`` in a background thread.

    Args:
        what: name used in error messages ("OTLP/HTTP", "read API").
        tls: ``(cert_pem_path, key_pem_path)`` to serve HTTPS.
        context: attributes set on the server object (handlers read them as ``self.server.<name>``).

    Raises:
        UserError: port in use / not permitted, or unreadable TLS files.
    """

    def __init__(self, what: str, host: str, port: int, handler_cls: type[BaseHTTPRequestHandler],
                 tls: tuple[str, str] | None = None, **context):
        try:
            self._server = _Server((host, port), handler_cls)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"cannot listen for {what} on {host}:{port}: port {port} is already in use") from None
            raise UserError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(tls[0], tls[1])
            except (OSError, ssl.SSLError) as exc:
                self._server.server_close()
                raise UserError(f"cannot load TLS certificate/key for {what}: {exc}") from None
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        for k, v in context.items():
            setattr(self._server, k, v)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"http-{what}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting connections and close the socket (in-flight handlers finish on their threads)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler base that logs through nothing (the collector has its own metrics)."""

    protocol_version = "HTTP/1.1"
    server_version = "vllm-otel-collector"
    sys_version = ""
    timeout = 60

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        return

    def send_body(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                self.close_connection = True
