"""The ingest pipeline: the receivers' :class:`~vllm_otel_collector.receivers.consumer.Consumer`.

One request's path (each part a small class, one file each)::

    Pipeline.consume(signal, body)           request thread
      → converters.Converters                body → Batch (C hot path or Python converter; otlp/)
      → admission.Admission                  room? → spool.Spool.append (durable) → queue.RequestQueue.put
    ← ConsumeResult                          the receiver acknowledges (partial_success for rejections)
    writer.Writer (thread)                   queue.take → spool.record_batch (dedup token) → processors →
                                             store inserts (transient errors retried; permanent ones split the
                                             batch → deadletters.DeadLetters) → spool.delete
    replay.Replay (thread, at start)         spooled requests of a previous run → queue (same batches)
    scheduler.Scheduler (thread)             plug-ins' periodic jobs

Every accepted request is in the spool before the call returns; each is stored exactly once (deduplication tokens,
see :mod:`~vllm_otel_collector.pipeline.writer`). Processor protocol: :class:`~vllm_otel_collector.plugins.Processor`.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from vllm_otel_collector.otlp.base import Batch, Limits, MalformedRequest
from vllm_otel_collector.pipeline.admission import Admission, Backpressure
from vllm_otel_collector.pipeline.converters import Converters
from vllm_otel_collector.pipeline.queue import RequestQueue
from vllm_otel_collector.pipeline.replay import Replay
from vllm_otel_collector.pipeline.scheduler import Scheduler
from vllm_otel_collector.pipeline.spool import Spool
from vllm_otel_collector.pipeline.writer import Writer
from vllm_otel_collector.plugins import PeriodicJob, Processor, SpanInterest
from vllm_otel_collector.receivers.consumer import METRICS, TRACES, ConsumeResult, Encoding, PermanentError, Signal
from vllm_otel_collector.otlp.jsonpb import json_to_protobuf
from vllm_otel_collector.selfmetrics import SelfMetrics

__all__ = ["Backpressure", "PeriodicJob", "Pipeline", "Processor"]


class Pipeline:
    """Converters + admission + queue + writer + replay + scheduler over one store and one :class:`Spool`.

    Args:
        store: where rows go.
        spool: the write-ahead spool.
        metrics: self-metrics to update.
        batch_rows: flush when this many rows are queued.
        flush_interval_s: flush at the latest this many seconds after the oldest queued request arrived.
        max_queue_rows: push back (``Backpressure``) when more rows than this wait in memory.
        limits: size limits (:class:`~vllm_otel_collector.otlp.base.Limits`).
        forward: optional callable receiving ``(signal_name, clean_body)`` of every accepted request (must not
            block).
        processors / periodic: the plug-ins' processors and periodic jobs.
        lease: a :class:`~vllm_otel_collector.store.lease.Lease` the periodic jobs run under (None: always run).
        retry_max_wait_s: cap of the backoff between insert attempts, seconds.
        native: use the C hot path for trace requests when it is built (:mod:`vllm_otel_collector.otlp.native`).
    """

    def __init__(self, store, spool: Spool, metrics: SelfMetrics, *, batch_rows: int = 20000,
                 flush_interval_s: float = 1.0, max_queue_rows: int = 200_000, limits: Limits = Limits(),
                 forward: Callable[[str, bytes], None] | None = None,
                 processors: list[Processor] | None = None, periodic: list[PeriodicJob] | None = None,
                 retry_max_wait_s: float = 5.0, native: bool = True, lease=None):
        self.store, self.spool, self.metrics = store, spool, metrics
        self.limits = limits
        self.max_queue_rows = max_queue_rows
        self.processors = list(processors or [])
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._threads: list[threading.Thread] = []
        interests = [getattr(p, "interest", None) for p in self.processors]
        #: what processors need from natively converted batches (None: every span)
        interests_or_all: list[SpanInterest] | None = None if None in interests else interests
        self.convert = Converters(limits, native, interests_or_all, metrics)
        self.queue = RequestQueue(metrics, batch_rows, flush_interval_s, self._stopping)
        self.writer = Writer(store, spool, self.queue, metrics, self.processors, interests_or_all, retry_max_wait_s,
                             self._stopping, self._abandon)
        self.admission = Admission(spool, self.queue, metrics, max_queue_rows, forward, self._stopping,
                                   lambda: self.writer.store_ok)
        self.replayer = Replay(spool, self.queue, self.convert, max_queue_rows, self._stopping)
        self.scheduler = Scheduler(store, list(periodic or []), metrics, self._stopping, lease=lease)

    # -- the Consumer interface --------------------------------------------------------------------------------------
    def consume(self, signal: Signal, body: bytes, encoding: Encoding = "protobuf") -> ConsumeResult:
        """Decode (``encoding``), validate, spool and queue one request of ``signal``.

        Raises:
            PermanentError: undecodable body (counted in ``malformed_requests_total``).
            CannotFitError: more rows than ``max_queue_rows`` in this one request.
            RetryableError: spool or queue full, or shutting down (nothing was stored).
        """
        try:
            if encoding == "json":
                body = json_to_protobuf(signal, body)
            batch = self.convert(signal, body)
        except MalformedRequest as exc:
            raise self.malformed(signal, str(exc)) from None
        self.admission.admit(signal, batch)
        return ConsumeResult(rejected=batch.rejected, message=batch.message(), accepted=batch.rows)

    def malformed(self, signal: Signal, message: str) -> PermanentError:
        """Count one undecodable request of ``signal``; the error to answer it with."""
        self.metrics.malformed.labels(signal.name).inc()
        return PermanentError(message)

    def accept_traces(self, body: bytes) -> Batch:
        """Convert, spool and queue one protobuf ``ExportTraceServiceRequest``; returns the batch (rejections
        inside). Raises ``MalformedRequest``, ``CannotFitError``, :class:`Backpressure`."""
        return self.admission.admit(TRACES, self.convert(TRACES, body))

    def accept_metrics(self, body: bytes) -> Batch:
        """As :meth:`accept_traces` for an ``ExportMetricsServiceRequest``."""
        return self.admission.admit(METRICS, self.convert(METRICS, body))

    def convert_traces(self, body: bytes) -> Batch:
        """One trace request → rows (see :class:`Converters`). Raises ``MalformedRequest``."""
        return self.convert.traces(body)

    # -- state -------------------------------------------------------------------------------------------------------
    @property
    def queued_rows(self) -> int:
        return self.queue.rows

    def stuck(self, after_s: float = 1.0) -> str | None:
        """Why the writer is stuck — its batch has been failing for more than ``after_s`` seconds — or None."""
        since = self.writer.failing_since
        if since is None or time.monotonic() - since < after_s:
            return None
        return f"writer retrying for {time.monotonic() - since:.0f} s: {self.writer.last_error}"

    @property
    def store_ok(self) -> bool:
        """False while the last insert attempt failed."""
        return self.writer.store_ok

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def replay(self) -> int:
        """Start re-queuing the requests a previous run left in the spool; returns how many there are.
        :meth:`drain` waits for the replay too."""
        thread = self.replayer.start()
        if thread is not None:
            self._threads.append(thread)
        return self.replayer.count

    def start(self) -> None:
        """Start the writer (and, if any periodic jobs, the scheduler) thread."""
        new = [t for t in (self.writer.thread(), self.scheduler.thread()) if t is not None]
        self._threads += new
        for t in new:
            t.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Refuse new requests, flush the queue, stop threads. Returns True when everything queued was written.

        If the store stays down past ``timeout_s`` the writer gives up; unwritten requests stay in the spool and are
        replayed at the next start (no loss).
        """
        self._stopping.set()
        self.queue.wake()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            if t.name == "vllm-otel-writer":
                t.join(max(0.0, deadline - time.monotonic()))
                if t.is_alive():
                    self._abandon.set()
                    t.join(5)
            else:
                t.join(5)
        return self.queue.idle and not self.replayer.incomplete

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until the queue is empty and nothing is in flight (tests, demo). Returns True when drained."""
        deadline = time.monotonic() + timeout_s
        self.queue.wake()
        while time.monotonic() < deadline:
            if self.queue.idle and not self.replayer.running:
                return True
            time.sleep(0.02)
        return False
