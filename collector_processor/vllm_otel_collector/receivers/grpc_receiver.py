"""OTLP/gRPC receiver: ``TraceService/Export`` and ``MetricsService/Export`` on one grpcio server.

Requests are taken as raw bytes (no grpcio deserializer) and handed to a
:class:`~vllm_otel_collector.receivers.consumer.Consumer`, which parses them once, leniently. Status codes (OTLP spec,
"OTLP/gRPC Response"; the mapping is the consumer module's table): success → OK with ``partial_success`` for rejected
items; :class:`PermanentError` (undecodable body) and :class:`CannotFitError` → INVALID_ARGUMENT;
:class:`RetryableError` (spool/queue full, shutting down) → UNAVAILABLE with a ``retry-after`` trailer (retried by
every OTLP exporter); missing or wrong bearer token → UNAUTHENTICATED; any unexpected failure → INTERNAL (the server
keeps serving).
"""

from __future__ import annotations

import errno
import logging
import socket
from concurrent import futures

import grpc

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.receivers.common import token_ok
from vllm_otel_collector.receivers.consumer import (
    METRICS,
    SIGNALS,
    TRACES,
    Consumer,
    PermanentError,
    RetryableError,
    Signal,
)

log = logging.getLogger(__name__)

TRACE_SERVICE = TRACES.grpc_service
METRICS_SERVICE = METRICS.grpc_service


class GrpcReceiver:
    """grpcio server bound to ``host:port``.

    Args:
        consumer: where requests go (the pipeline).
        token: bearer token required in the ``authorization`` metadata (None = no auth).
        tls: ``(cert_pem_path, key_pem_path)`` to serve TLS, else plaintext.
        max_message_bytes: largest request accepted (grpcio answers RESOURCE_EXHAUSTED beyond it).
        workers: handler threads.

    Raises:
        UserError: the port cannot be bound (in use, or no permission) — message names the port.
    """

    def __init__(self, consumer: Consumer, host: str, port: int, token: str | None = None,
                 tls: tuple[str, str] | None = None, max_message_bytes: int = 16 << 20, workers: int = 8):
        self.consumer, self.token = consumer, token
        options = [("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0)]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
                                   options=options)
        for signal in SIGNALS:
            export = grpc.unary_unary_rpc_method_handler(
                self._handler(signal), response_serializer=lambda m: m.SerializeToString())
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(signal.grpc_service, {"Export": export}),))
        address = f"{host}:{port}"
        if port and _port_taken(host, port):  # checked first: grpc core would also log its own multi-line error
            raise UserError(f"cannot listen for OTLP/gRPC on {address}: port {port} is already in use")
        try:
            if tls:
                with open(tls[0], "rb") as c, open(tls[1], "rb") as k:
                    creds = grpc.ssl_server_credentials([(k.read(), c.read())])
                bound = self._server.add_secure_port(address, creds)
            else:
                bound = self._server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        except OSError as exc:
            raise UserError(f"cannot read TLS certificate/key: {exc}") from None
        if not bound:
            raise UserError(f"cannot listen for OTLP/gRPC on {address}: port {port} is already in use")
        self.port = bound

    def start(self) -> None:
        self._server.start()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting new RPCs; in-flight RPCs get ``grace_s`` seconds to finish."""
        self._server.stop(grace_s).wait(grace_s + 1)

    def _handler(self, signal: Signal):
        return lambda body, context: self._handle(signal, body, context)

    def _handle(self, signal: Signal, body: bytes, context: grpc.ServicerContext):
        if self.token:
            auth = dict(context.invocation_metadata()).get("authorization")
            if not token_ok(self.token, auth):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        try:
            result = self.consumer.consume(signal, body)
        except PermanentError as exc:  # CannotFitError too: RESOURCE_EXHAUSTED would be retried by SDK exporters
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except RetryableError as exc:
            context.set_trailing_metadata((("retry-after", str(exc.retry_after_s)),))
            context.abort(grpc.StatusCode.UNAVAILABLE, f"retry later: {exc}")
        except Exception as exc:  # noqa: BLE001 - nothing a client sends may take the server down
            log.exception("unexpected error handling an OTLP/gRPC %s request", signal)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
        return signal.response(result)


def _port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
