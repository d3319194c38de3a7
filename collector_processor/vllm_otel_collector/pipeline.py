"""The ingest pipeline: accept (convert → spool → queue) and the writer thread (batch → processors → inserts).

The pipeline is the receivers' :class:`~vllm_otel_collector.receivers.consumer.Consumer`: receivers call
:meth:`Pipeline.consume` with a :class:`~vllm_otel_collector.receivers.consumer.Signal` and the request body.
An accepted request is in the spool before the call returns, so the receiver may acknowledge it. The writer thread
takes whole requests from a bounded in-memory queue, batches them (``batch_rows`` rows or ``flush_interval_s``
seconds, whichever first), calls the registered processors on the ``otel_traces`` columns, inserts
``otel_traces`` then the processors' extra tables, retrying each insert with exponential backoff and jitter
(tenacity) until ClickHouse confirms, and only then deletes the requests' spool files. Before its first insert a batch
is recorded in the spool with a deduplication token that all its inserts carry, so inserting it again (a retry after
a lost confirmation, a replay after a crash) is dropped by ClickHouse: each accepted request is stored exactly once.

Trace requests take the C hot path when they can (:mod:`vllm_otel_collector.native`: request → Native block, inserted
as is) and the pure-Python converter otherwise (rejections, truncation, rare value types); both give the same rows.

Processor protocol (the analytics plug-in point): ``processor.process(traces: dict[str, list]) ->
list[tuple[str, dict[str, list]]]`` — ``traces`` holds ``otel_traces`` columns as inserted (column name → list, one
value per span; see :mod:`vllm_otel_collector.convert`) for the batch's spans the processor declared in its optional
``interest`` attribute (:class:`~vllm_otel_collector.native.SpanInterest`; at least those, possibly more; without
``interest``, every span); the return value lists extra ``(table, columns)`` inserts written in the same flush,
after ``otel_traces``. Periodic jobs are ``(interval_seconds, callable(store, now_unix_seconds))`` run on their own
thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential_jitter

from vllm_otel_collector.otlp.base import Batch, Limits, MalformedRequest, NativeBlock, Payload, concat_payloads
from vllm_otel_collector.otlp.metrics import MetricBatch, metrics_from_bytes
from vllm_otel_collector.otlp.native import NativeTraceBatch, convert_traces_fast
from vllm_otel_collector.otlp.traces import TraceBatch, concat_columns, traces_from_bytes
from vllm_otel_collector.plugins import SpanInterest
from vllm_otel_collector.otlp.jsonpb import json_to_protobuf
from vllm_otel_collector.receivers.consumer import (
    BY_NAME,
    METRICS,
    TRACES,
    CannotFitError,
    ConsumeResult,
    Encoding,
    PermanentError,
    RetryableError,
    Signal,
)
from vllm_otel_collector.selfmetrics import SelfMetrics
from vllm_otel_collector.spool import BatchManifest, Spool, SpoolFull
from vllm_otel_collector.store import Store

log = logging.getLogger(__name__)

Columns = dict[str, list]
PeriodicJob = tuple[float, Callable[[Store, float], Any]]


class Processor(Protocol):
    def process(self, traces: Columns) -> list[tuple[str, Columns]]: ...


class Backpressure(RetryableError):
    """The collector cannot take this request now; the client should retry after ``retry_after_s`` seconds."""


@dataclass
class _Entry:
    seq: int
    kind: str
    size: int
    rows: int
    batch: TraceBatch | NativeTraceBatch | MetricBatch
    enqueued: float
    manifest: BatchManifest | None = None  # set once the entry's batch is recorded (then always written together)


class Pipeline:
    """Bounded queue + writer thread + periodic-job thread over one :class:`Store` and one :class:`Spool`.

    Args:
        store: where rows go.
        spool: the write-ahead spool.
        metrics: self-metrics to update.
        batch_rows: flush when this many rows are queued.
        flush_interval_s: flush at the latest this many seconds after the oldest queued request arrived.
        max_queue_rows: push back (``Backpressure``) when more rows than this wait in memory.
        limits: span size limits (see :class:`vllm_otel_collector.convert.Limits`).
        forward: optional callable receiving ``(kind, clean_body)`` of every accepted request (must not block).
        native: use the C hot path for trace requests when it is built (:mod:`vllm_otel_collector.native`).
    """

    def __init__(self, store: Store, spool: Spool, metrics: SelfMetrics, *, batch_rows: int = 20000,
                 flush_interval_s: float = 1.0, max_queue_rows: int = 200_000, limits: Limits = Limits(),
                 forward: Callable[[str, bytes], None] | None = None,
                 processors: list[Processor] | None = None, periodic: list[PeriodicJob] | None = None,
                 retry_max_wait_s: float = 5.0, native: bool = True):
        self.store, self.spool, self.metrics = store, spool, metrics
        self.batch_rows, self.flush_interval_s, self.max_queue_rows = batch_rows, flush_interval_s, max_queue_rows
        self.limits, self.forward = limits, forward
        self.processors = list(processors or [])
        self.periodic = list(periodic or [])
        self.retry_max_wait_s = retry_max_wait_s
        self.native = native
        self._queue: deque[_Entry] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._store_ok = True
        self._threads: list[threading.Thread] = []
        self._inflight = 0
        self._replaying = False
        self._replay_incomplete = False
        interests = [getattr(p, "interest", None) for p in self.processors]
        #: what processors need from natively converted batches (None: every span)
        self._interests: list[SpanInterest] | None = None if None in interests else interests
        self._interest_keys = tuple(sorted({k.encode() for i in (self._interests or []) for k in i.attribute_keys}))
        self._accept = {TRACES: self.accept_traces, METRICS: self.accept_metrics}
        self._convert = {TRACES: self.convert_traces, METRICS: lambda body: metrics_from_bytes(body, self.limits)}

    # -- receiving ---------------------------------------------------------------------------------------------------
    def consume(self, signal: Signal, body: bytes, encoding: Encoding = "protobuf") -> ConsumeResult:
        """The :class:`~vllm_otel_collector.receivers.consumer.Consumer` entry point: decode (``encoding``), validate,
        spool and queue one request of ``signal``.

        Raises:
            PermanentError: undecodable body (counted in ``malformed_requests_total``).
            CannotFitError: more rows than ``max_queue_rows`` in this one request.
            RetryableError: spool or queue full, or shutting down (nothing was stored).
        """
        try:
            if encoding == "json":
                body = json_to_protobuf(signal, body)
            batch = self._accept[signal](body)
        except MalformedRequest as exc:
            raise self.malformed(signal, str(exc)) from None
        return ConsumeResult(rejected=batch.rejected, message=batch.message(), accepted=batch.rows)

    def malformed(self, signal: Signal, message: str) -> PermanentError:
        """Count one undecodable request of ``signal``; the error to answer it with."""
        self.metrics.malformed.labels(signal.name).inc()
        return PermanentError(message)

    def convert_traces(self, body: bytes) -> TraceBatch | NativeTraceBatch:
        """One request → rows: the C hot path when it takes the request, else the Python converter.

        Raises:
            MalformedRequest: undecodable body.
        """
        batch = convert_traces_fast(body, self.limits, self._interest_keys) if self.native else None
        if batch is not None:
            self.metrics.trace_requests.labels("native").inc()
            return batch
        self.metrics.trace_requests.labels("python").inc()
        return traces_from_bytes(body, self.limits)

    def accept_traces(self, body: bytes) -> TraceBatch | NativeTraceBatch:
        """Validate, spool and queue one ``ExportTraceServiceRequest``; returns the batch (rejections inside).

        Raises:
            MalformedRequest: undecodable body.
            Backpressure: spool or queue full, or shutting down (nothing was stored).
        """
        batch = self.convert_traces(body)
        m = self.metrics
        m.received.labels("traces").inc(batch.rows + batch.rejected)
        m.rejected.labels("traces").inc(batch.rejected)
        if batch.rows:
            self._admit("traces", batch, batch.rows)
        return batch

    def accept_metrics(self, body: bytes) -> MetricBatch:
        """As :meth:`accept_traces` for an ``ExportMetricsServiceRequest``."""
        batch = metrics_from_bytes(body, self.limits)
        m = self.metrics
        m.received.labels("metrics").inc(batch.rows + batch.rejected)
        m.rejected.labels("metrics").inc(batch.rejected)
        if batch.rows:
            self._admit("metrics", batch, batch.rows)
        return batch

    def _admit(self, kind: str, batch, rows: int) -> None:
        if self._stopping.is_set():
            self.metrics.refused.labels(kind).inc(rows)
            raise Backpressure("collector is shutting down", retry_after_s=5)
        if rows > self.max_queue_rows:
            self.metrics.refused.labels(kind).inc(rows)
            raise CannotFitError(f"request of {rows} rows can never fit the queue (max_queue_rows "
                                 f"{self.max_queue_rows}); split it into smaller requests")
        if self._queued_rows + rows > self.max_queue_rows:
            self.metrics.refused.labels(kind).inc(rows)
            raise Backpressure(f"queue full ({self._queued_rows} rows waiting; store "
                               f"{'reachable' if self._store_ok else 'unreachable'})", retry_after_s=2)
        try:
            seq = self.spool.append(kind, batch.clean_body)
        except SpoolFull as exc:
            self.metrics.refused.labels(kind).inc(rows)
            raise Backpressure(str(exc), retry_after_s=5) from None
        except OSError as exc:
            self.metrics.refused.labels(kind).inc(rows)
            raise Backpressure(f"spool write failed: {exc.strerror}", retry_after_s=5) from None
        self.metrics.spool_bytes.set(self.spool.bytes)
        self._enqueue(_Entry(seq, kind, len(batch.clean_body), rows, batch, time.monotonic()))
        self.metrics.accepted.labels(kind).inc(rows)
        if self.forward is not None:
            self.forward(kind, batch.clean_body)

    def _enqueue(self, entry: _Entry) -> None:
        self._enqueue_many([entry])

    def _enqueue_many(self, entries: list[_Entry]) -> None:
        """Queue entries together (a replayed batch is never split by the writer)."""
        with self._cond:
            self._queue.extend(entries)
            self._queued_rows += sum(e.rows for e in entries)
            self.metrics.queued.set(self._queued_rows)
            if self._queued_rows >= self.batch_rows or entries[0].manifest is not None:
                self._cond.notify()

    def replay(self) -> int:
        """Start re-queuing the requests a previous run left in the spool; returns how many there are.

        A background thread feeds them in order, never holding more than ``max_queue_rows`` rows in memory (new
        requests meanwhile see a full queue and are pushed back). :meth:`drain` waits for the replay too.
        """
        pending = self.spool.pending()
        present = set(pending)
        plan: list[tuple[BatchManifest | None, list[tuple[int, str]]]] = []
        grouped: set[tuple[int, str]] = set()
        for manifest in self.spool.batches():
            items = [i for i in manifest.items if i in present]
            if len(items) < len(manifest.items):  # confirmed; its cleanup was interrupted
                self.spool.discard(items)
                self.spool.forget_batch(manifest)
                present.difference_update(items)
                continue
            plan.append((manifest, items))
            grouped.update(items)
        plan += [(None, [i]) for i in pending if i in present and i not in grouped]
        plan.sort(key=lambda p: p[1][0][0])
        pending = [i for _, items in plan for i in items]
        if pending:
            log.info("replaying %d spooled request(s)", len(pending))
            self._replaying = True
            thread = threading.Thread(target=self._replay_loop, args=(plan,), name="vllm-otel-replay",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        return len(pending)

    def _replay_loop(self, plan: list[tuple[BatchManifest | None, list[tuple[int, str]]]]) -> None:
        try:
            for manifest, items in plan:
                while self._queued_rows >= self.max_queue_rows and not self._stopping.is_set():
                    time.sleep(0.05)
                if self._stopping.is_set():
                    self._replay_incomplete = True
                    return
                entries = []
                for seq, kind in items:
                    try:
                        body = self.spool.read(seq, kind)
                        batch = self._convert[BY_NAME[kind]](body)
                    except Exception as exc:  # noqa: BLE001 - a corrupt spool file must not stop the collector
                        log.error("dropping unreadable spool entry %d (%s): %s", seq, kind, exc)
                        self.spool.delete([(seq, kind, 0)])
                        continue
                    entries.append(_Entry(seq, kind, len(body), batch.rows, batch, time.monotonic(), manifest))
                if entries:
                    self._enqueue_many(entries)
                elif manifest is not None:
                    self.spool.forget_batch(manifest)
        finally:
            self._replaying = False

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def store_ok(self) -> bool:
        """False while the last insert attempt failed."""
        return self._store_ok

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer (and, if any periodic jobs, the scheduler) thread."""
        new = [threading.Thread(target=self._writer_loop, name="vllm-otel-writer", daemon=True)]
        if self.periodic:
            new.append(threading.Thread(target=self._periodic_loop, name="vllm-otel-periodic", daemon=True))
        self._threads += new
        for t in new:
            t.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Refuse new requests, flush the queue, stop threads. Returns True when everything queued was written.

        If the store stays down past ``timeout_s`` the writer gives up; unwritten requests stay in the spool and are
        replayed at the next start (no loss).
        """
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            if t.name == "vllm-otel-writer":
                t.join(max(0.0, deadline - time.monotonic()))
                if t.is_alive():
                    self._abandon.set()
                    t.join(5)
            else:
                t.join(5)
        return not self._queue and self._inflight == 0 and not self._replay_incomplete

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until the queue is empty and nothing is in flight (tests, demo). Returns True when drained."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._cond.notify_all()
        while time.monotonic() < deadline:
            if not self._queue and self._inflight == 0 and not self._replaying:
                return True
            time.sleep(0.02)
        return False

    # -- writer ------------------------------------------------------------------------------------------------------
    def _take(self) -> list[_Entry]:
        with self._cond:
            while not self._queue:
                if self._stopping.is_set():
                    return []
                self._cond.wait(0.2)
            taken, rows = [], 0
            recorded = self._queue[0].manifest
            if recorded is not None:  # a recorded batch (retried or replayed) is written again exactly as it was
                while self._queue and self._queue[0].manifest is recorded:
                    e = self._queue.popleft()
                    taken.append(e)
                    rows += e.rows
                self._inflight = rows
                return taken
            oldest = self._queue[0].enqueued
            while (self._queued_rows < self.batch_rows and not self._stopping.is_set()
                   and time.monotonic() - oldest < self.flush_interval_s):
                self._cond.wait(max(0.005, self.flush_interval_s - (time.monotonic() - oldest)))
            while self._queue and self._queue[0].manifest is None and (
                    not taken or rows + self._queue[0].rows <= self.batch_rows):
                e = self._queue.popleft()
                taken.append(e)
                rows += e.rows
            self._inflight = rows
            return taken

    def _writer_loop(self) -> None:
        while True:
            entries = self._take()
            if not entries:
                return
            try:
                self._write(entries)
            except _Abandoned:
                log.warning("store still failing at shutdown: %d request(s) stay in the spool for replay",
                            len(entries) + len(self._queue))
                return
            except Exception:  # noqa: BLE001 - a bug must not kill the writer; the batch is retried
                log.exception("writing a batch of %d request(s) failed unexpectedly; retrying", len(entries))
                with self._cond:
                    self._queue.extendleft(reversed(entries))
                    self._inflight = 0
                if self._stopping.wait(1.0) and self._abandon.is_set():
                    return
                continue
            with self._cond:
                self._queued_rows -= sum(e.rows for e in entries)
                self._inflight = 0
                self.metrics.queued.set(self._queued_rows)
            if self.spool.delete([(e.seq, e.kind, e.size) for e in entries]) and entries[0].manifest is not None:
                self.spool.forget_batch(entries[0].manifest)
            self.metrics.spool_bytes.set(self.spool.bytes)

    def _write(self, entries: list[_Entry]) -> None:
        started = time.perf_counter()
        if entries[0].manifest is None:  # OSError → the writer's retry path; nothing was inserted yet
            manifest = self.spool.record_batch([(e.seq, e.kind) for e in entries])
            for e in entries:
                e.manifest = manifest
        token = entries[0].manifest.token
        # raw tables: spans first (Native blocks before columns), then the processors' tables, then metrics
        groups: dict[tuple[str, bool], list[Payload]] = {}
        spans: list[Columns] = []
        for e in entries:
            for table, payload in e.batch.inserts():
                groups.setdefault((table, isinstance(payload, NativeBlock)), []).append(payload)
        span_keys = sorted((k for k in groups if k[0] == "otel_traces"), key=lambda k: not k[1])
        inserts: list[tuple[str, Payload, bool]] = [(k[0], concat_payloads(groups[k]), True) for k in span_keys]
        if self.processors:
            spans = [c for e in entries if (c := e.batch.span_columns(self._interests)) is not None]
        if spans:
            cols = concat_columns(spans)
            for proc in self.processors:
                try:
                    inserts.extend((t, c, False) for t, c in proc.process(cols))
                except Exception:  # noqa: BLE001 - a processor bug must not block raw span storage
                    self.metrics.processor_errors.inc()
                    log.exception("processor %r failed on a batch of %d spans", proc, len(cols["TraceId"]))
        inserts.extend((k[0], concat_payloads(groups[k]), True) for k in groups if k[0] != "otel_traces")
        per_table: dict[str, int] = {}
        for table, cols, must in inserts:
            n = per_table[table] = per_table.get(table, -1) + 1
            self._insert_with_retry(table, cols, must, f"{token}:{table}:{n}")
        self.metrics.write_latency.observe(time.perf_counter() - started)

    def _insert_with_retry(self, table: str, cols: Payload, must_succeed: bool, token: str) -> None:
        def before_sleep(state) -> None:
            self._store_ok = False
            self.metrics.retried.inc()
            if self._abandon.is_set():
                raise _Abandoned()
            log.warning("insert into %s failed (attempt %d): %s", table, state.attempt_number,
                        str(state.outcome.exception()).splitlines()[0][:200] if state.outcome.exception() else "")

        retrying = Retrying(
            wait=wait_exponential_jitter(initial=0.05, max=self.retry_max_wait_s),
            stop=(lambda s: False) if must_succeed else stop_after_attempt(5),
            retry=retry_if_not_exception_type(_Abandoned),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            if isinstance(cols, NativeBlock):
                rows = retrying(self.store.insert_native, table, cols.block, cols.rows, dedup_token=token)
            else:
                rows = retrying(self.store.insert, table, cols, dedup_token=token)
        except _Abandoned:
            raise
        except Exception:  # noqa: BLE001 - only reachable for derived tables (bounded attempts)
            self.metrics.processor_errors.inc()
            log.exception("dropping %d derived row(s) for %s after repeated failures",
                          cols.rows if isinstance(cols, NativeBlock) else len(next(iter(cols.values()))), table)
            return
        self._store_ok = True
        self.metrics.written.labels(table).inc(rows)

    # -- periodic jobs -----------------------------------------------------------------------------------------------
    def _periodic_loop(self) -> None:
        next_run = [time.monotonic() + interval for interval, _ in self.periodic]
        while not self._stopping.is_set():
            now = time.monotonic()
            for i, (interval, job) in enumerate(self.periodic):
                if now >= next_run[i]:
                    next_run[i] = now + interval
                    try:
                        job(self.store, time.time())
                    except Exception:  # noqa: BLE001 - a failing job is logged and retried next interval
                        self.metrics.processor_errors.inc()
                        log.exception("periodic job %r failed", job)
            self._stopping.wait(max(0.05, min(next_run) - time.monotonic()))


class _Abandoned(Exception):
    """Shutdown deadline passed while the store was failing."""
