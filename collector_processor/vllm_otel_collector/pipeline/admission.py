"""Admission: the request threads' half of the pipeline — convert, check room, spool, queue, forward.

An admitted request is in the spool before :meth:`Admission.admit` returns, so the receiver may acknowledge it.
Push-back (nothing stored, the client retries) when shutting down, when the queue holds ``max_queue_rows`` rows, or
when the spool is full or failing; a request with more rows than the queue can ever hold is refused for good.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from vllm_otel_collector.otlp.base import Batch
from vllm_otel_collector.pipeline.queue import Entry, RequestQueue
from vllm_otel_collector.pipeline.spool import Spool, SpoolFull
from vllm_otel_collector.receivers.consumer import CannotFitError, RetryableError, Signal
from vllm_otel_collector.selfmetrics import SelfMetrics


class Backpressure(RetryableError):
    """The collector cannot take this request now; the client should retry after ``retry_after_s`` seconds."""


class Admission:
    """Spools and queues converted requests.

    Args:
        spool / queue / metrics: the pipeline's parts.
        max_queue_rows: push back when the queue would hold more rows.
        forward: optional callable receiving ``(signal_name, clean_body)`` of every admitted request (must not
            block).
        stopping: set at shutdown (then everything is pushed back).
        store_ok: reports whether the last insert worked (named in the queue-full message).
    """

    def __init__(self, spool: Spool, queue: RequestQueue, metrics: SelfMetrics, max_queue_rows: int,
                 forward: Callable[[str, bytes], None] | None, stopping: threading.Event,
                 store_ok: Callable[[], bool]):
        self.spool, self.queue, self.metrics, self.max_queue_rows = spool, queue, metrics, max_queue_rows
        self.forward, self._stopping, self._store_ok = forward, stopping, store_ok

    def admit(self, signal: Signal, batch: Batch) -> Batch:
        """Count ``batch`` and, when it has rows, spool and queue it. Returns ``batch``.

        Raises:
            CannotFitError: more rows than ``max_queue_rows``.
            Backpressure: shutting down, queue full, spool full or failing (nothing was stored).
        """
        m, kind, rows = self.metrics, signal.name, batch.rows
        m.received.labels(kind).inc(rows + batch.rejected)
        m.rejected.labels(kind).inc(batch.rejected)
        if not rows:
            return batch
        if self._stopping.is_set():
            m.refused.labels(kind).inc(rows)
            raise Backpressure("collector is shutting down", retry_after_s=5)
        if rows > self.max_queue_rows:
            m.refused.labels(kind).inc(rows)
            raise CannotFitError(f"request of {rows} rows can never fit the queue (max_queue_rows "
                                 f"{self.max_queue_rows}); split it into smaller requests")
        if self.queue.rows + rows > self.max_queue_rows:
            m.refused.labels(kind).inc(rows)
            raise Backpressure(f"queue full ({self.queue.rows} rows waiting; store "
                               f"{'reachable' if self._store_ok() else 'unreachable'})", retry_after_s=2)
        try:
            seq = self.spool.append(kind, batch.clean_body)
        except SpoolFull as exc:
            m.refused.labels(kind).inc(rows)
            raise Backpressure(str(exc), retry_after_s=5) from None
        except OSError as exc:
            m.refused.labels(kind).inc(rows)
            raise Backpressure(f"spool write failed: {exc.strerror}", retry_after_s=5) from None
        m.spool_bytes.set(self.spool.bytes)
        self.queue.put([Entry(seq, signal, len(batch.clean_body), rows, batch, time.monotonic())])
        m.accepted.labels(kind).inc(rows)
        if self.forward is not None:
            self.forward(kind, batch.clean_body)
        return batch
