"""The writer thread: takes batches from the queue, records them in the spool with a deduplication token, runs the
processors, inserts, and deletes the requests' spool files once ClickHouse confirmed every insert.

Insert order of one batch: ``otel_traces`` (Native blocks, then Python columns), the processors' tables, the metrics
tables. Each insert carries ``<token>:<table>:<n>`` as ``insert_deduplication_token``, so inserting the recorded
batch again (retry after a lost confirmation, replay after a crash) is dropped by ClickHouse: exactly-once storage.
Raw-table inserts are retried with exponential backoff and jitter (tenacity) until they succeed or the shutdown
deadline passes; the processors' inserts 5 times, then their rows are dropped (counted in
``processor_errors_total``) — derived rows never block raw spans.
"""

from __future__ import annotations

import logging
import threading
import time

from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential_jitter

from vllm_otel_collector.otlp.base import Columns, NativeBlock, Payload, concat_columns, concat_payloads
from vllm_otel_collector.pipeline.queue import Entry, RequestQueue
from vllm_otel_collector.pipeline.spool import Spool
from vllm_otel_collector.plugins import Processor, SpanInterest
from vllm_otel_collector.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)


class Abandoned(Exception):
    """Shutdown deadline passed while the store was failing."""


class Writer:
    """Batches → inserts, on the ``vllm-otel-writer`` thread.

    Args:
        store: where rows go (``insert``, ``insert_native``).
        processors / interests: the plug-ins' processors and what they need (None: every span).
        retry_max_wait_s: cap of the backoff between insert attempts, seconds.
        stopping: shutdown started (the writer drains the queue, then exits).
        abandon: shutdown deadline passed: a failing insert gives up (its requests stay spooled).
    """

    def __init__(self, store, spool: Spool, queue: RequestQueue, metrics: SelfMetrics, processors: list[Processor],
                 interests: list[SpanInterest] | None, retry_max_wait_s: float, stopping: threading.Event,
                 abandon: threading.Event):
        self.store, self.spool, self.queue, self.metrics = store, spool, queue, metrics
        self.processors, self.interests, self.retry_max_wait_s = processors, interests, retry_max_wait_s
        self._stopping, self._abandon = stopping, abandon
        self.store_ok = True

    def thread(self) -> threading.Thread:
        """The (unstarted) writer thread."""
        return threading.Thread(target=self._loop, name="vllm-otel-writer", daemon=True)

    def _loop(self) -> None:
        while True:
            entries = self.queue.take()
            if not entries:
                return
            try:
                self.write(entries)
            except Abandoned:
                log.warning("store still failing at shutdown: %d request(s) stay in the spool for replay",
                            len(entries) + len(self.queue))
                return
            except Exception:  # noqa: BLE001 - a bug must not kill the writer; the batch is retried
                log.exception("writing a batch of %d request(s) failed unexpectedly; retrying", len(entries))
                self.queue.give_back(entries)
                if self._stopping.wait(1.0) and self._abandon.is_set():
                    return
                continue
            self.queue.done(entries)
            if self.spool.delete([(e.seq, e.kind, e.size) for e in entries]) and entries[0].manifest is not None:
                self.spool.forget_batch(entries[0].manifest)
            self.metrics.spool_bytes.set(self.spool.bytes)

    def inserts(self, entries: list[Entry]) -> list[tuple[str, Payload, bool]]:
        """``[(table, payload, must_succeed), ...]`` of one batch, in insert order (module docstring)."""
        groups: dict[tuple[str, bool], list[Payload]] = {}
        for e in entries:
            for table, payload in e.batch.inserts():
                groups.setdefault((table, isinstance(payload, NativeBlock)), []).append(payload)
        span_keys = sorted((k for k in groups if k[0] == "otel_traces"), key=lambda k: not k[1])
        out: list[tuple[str, Payload, bool]] = [(k[0], concat_payloads(groups[k]), True) for k in span_keys]
        spans: list[Columns] = []
        if self.processors:
            spans = [c for e in entries if (c := e.batch.span_columns(self.interests)) is not None]
        if spans:
            cols = concat_columns(spans)
            for proc in self.processors:
                try:
                    out.extend((t, c, False) for t, c in proc.process(cols))
                except Exception:  # noqa: BLE001 - a processor bug must not block raw span storage
                    self.metrics.processor_errors.inc()
                    log.exception("processor %r failed on a batch of %d spans", proc, len(cols["TraceId"]))
        out.extend((k[0], concat_payloads(groups[k]), True) for k in groups if k[0] != "otel_traces")
        return out

    def write(self, entries: list[Entry]) -> None:
        """Record (first time), insert every part of the batch. Raises ``Abandoned`` at the shutdown deadline."""
        started = time.perf_counter()
        if entries[0].manifest is None:  # OSError → the writer's retry path; nothing was inserted yet
            manifest = self.spool.record_batch([(e.seq, e.kind) for e in entries])
            for e in entries:
                e.manifest = manifest
        token = entries[0].manifest.token
        per_table: dict[str, int] = {}
        for table, payload, must in self.inserts(entries):
            n = per_table[table] = per_table.get(table, -1) + 1
            self._insert_with_retry(table, payload, must, f"{token}:{table}:{n}")
        self.metrics.write_latency.observe(time.perf_counter() - started)

    def _insert_with_retry(self, table: str, payload: Payload, must_succeed: bool, token: str) -> None:
        def before_sleep(state) -> None:
            self.store_ok = False
            self.metrics.retried.inc()
            if self._abandon.is_set():
                raise Abandoned()
            log.warning("insert into %s failed (attempt %d): %s", table, state.attempt_number,
                        str(state.outcome.exception()).splitlines()[0][:200] if state.outcome.exception() else "")

        retrying = Retrying(
            wait=wait_exponential_jitter(initial=0.05, max=self.retry_max_wait_s),
            stop=(lambda s: False) if must_succeed else stop_after_attempt(5),
            retry=retry_if_not_exception_type(Abandoned),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            if isinstance(payload, NativeBlock):
                rows = retrying(self.store.insert_native, table, payload.block, payload.rows, dedup_token=token)
            else:
                rows = retrying(self.store.insert, table, payload, dedup_token=token)
        except Abandoned:
            raise
        except Exception:  # noqa: BLE001 - only reachable for derived tables (bounded attempts)
            self.metrics.processor_errors.inc()
            log.exception("dropping %d derived row(s) for %s after repeated failures",
                          payload.rows if isinstance(payload, NativeBlock) else len(next(iter(payload.values()))),
                          table)
            return
        self.store_ok = True
        self.metrics.written.labels(table).inc(rows)
