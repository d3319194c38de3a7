"""Forwarding exporter: re-sends every accepted OTLP request to another OTLP/gRPC endpoint (e.g. Jaeger).

It has its own bounded queue and thread, so a slow or dead endpoint never blocks ClickHouse writes and vice versa.
Forwarding is best effort (ClickHouse is the system of record): each request is retried with exponential backoff
and jitter up to ``max_attempts``; when the queue is full the oldest request is dropped and counted.
The bytes sent are exactly the accepted request (spans rejected by validation removed), so the endpoint sees the
same spans, ids and attributes the client sent.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import grpc
from tenacity import Retrying, stop_after_attempt, wait_exponential_jitter

from vllm_otel_collector.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)

_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}


class Forwarder:
    """OTLP/gRPC forwarder.

    Args:
        endpoint: ``host:port`` of the OTLP/gRPC receiver.
        metrics: self-metrics (``forwarded_total``, ``forward_dropped_total``).
        signals: which signals to forward (Jaeger takes traces only).
        max_queue: requests held while the endpoint is slow; beyond it the oldest is dropped.
        timeout_s: per-call deadline, seconds.
        insecure: plaintext channel (else TLS with system roots, or ``ca_file``).
        headers: extra metadata (e.g. ``{"authorization": "Bearer ..."}``).
    """

    def __init__(self, endpoint: str, metrics: SelfMetrics, signals: tuple[str, ...] = ("traces",),
                 max_queue: int = 10_000, timeout_s: float = 5.0, max_attempts: int = 5, insecure: bool = True,
                 ca_file: str | None = None, headers: dict[str, str] | None = None):
        self.endpoint, self.metrics, self.signals = endpoint, metrics, set(signals)
        self.timeout_s, self.max_attempts = timeout_s, max_attempts
        self._queue: deque[tuple[str, bytes]] = deque(maxlen=max_queue)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        if insecure:
            self._channel = grpc.insecure_channel(endpoint)
        else:
            root = open(ca_file, "rb").read() if ca_file else None
            self._channel = grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(root_certificates=root))
        self._calls = {k: self._channel.unary_unary(m) for k, m in _METHODS.items()}
        self._metadata = tuple((headers or {}).items())
        self._thread = threading.Thread(target=self._loop, name="vllm-otel-forwarder", daemon=True)
        self._busy = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, kind: str, body: bytes) -> None:
        """Queue one request (never blocks; drops the oldest request when full)."""
        if kind not in self.signals:
            return
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.metrics.forward_dropped.inc()
            self._queue.append((kind, body))
            self._cond.notify()

    def drain(self, timeout_s: float) -> bool:
        """Wait until the queue is empty (True) or ``timeout_s`` passes (False)."""
        stop_at = threading.Event()
        waited = 0.0
        while waited < timeout_s:
            if not self._queue and not self._busy:
                return True
            stop_at.wait(0.02)
            waited += 0.02
        return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Try to deliver what is queued within ``timeout_s``, then stop and close the channel."""
        self.drain(timeout_s)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._channel.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                kind, body = self._queue.popleft()
                self._busy = True
            try:
                Retrying(stop=stop_after_attempt(self.max_attempts), reraise=True,
                         wait=wait_exponential_jitter(initial=0.1, max=2.0))(self._send, kind, body)
                self.metrics.forwarded.inc()
            except Exception as exc:  # noqa: BLE001 - best effort: count and move on
                self.metrics.forward_dropped.inc()
                details = exc.details() if callable(getattr(exc, "details", None)) else ""
                log.warning("forwarding to %s failed, request dropped: %s", self.endpoint, details or exc)
            finally:
                self._busy = False

    def _send(self, kind: str, body: bytes) -> None:
        if self._stop.is_set():
            raise RuntimeError("forwarder stopping")
        self._calls[kind](body, timeout=self.timeout_s, metadata=self._metadata or None)
