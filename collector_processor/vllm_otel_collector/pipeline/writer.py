"""The writer thread: takes batches from the queue, records them in the spool with a deduplication token, runs the
processors, inserts, and deletes the requests' spool files once ClickHouse confirmed every insert.

Insert order of one batch: ``otel_traces`` (Native blocks, then Python columns), the processors' tables, the metrics
tables. Each insert carries ``<token>:<table>:<n>`` as ``insert_deduplication_token``, so inserting the recorded
batch again (retry after a lost confirmation, replay after a crash) is dropped by ClickHouse: exactly-once storage.
Raw-table inserts are retried with exponential backoff and jitter (tenacity) until they succeed or the shutdown
deadline passes — but only for transient errors (:func:`~vllm_otel_collector.store.errors.is_permanent`). A permanent
error on a raw table splits the batch: that table's rows are inserted request by request (token
``<token>:<table>:<n>:<seq>``), the requests that fail for good go to the dead letters
(:mod:`~vllm_otel_collector.pipeline.deadletters`, counted in ``dead_lettered_total``) and the rest of the batch is
written without them. The processors' inserts are tried 5 times (once for a permanent error), then their rows are
dropped (counted in ``processor_errors_total``) — derived rows never block raw spans. Every step is deterministic, so
a batch replayed after a crash takes the same path with the same tokens (exactly once).
"""

from __future__ import annotations

import logging
import threading
import time

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from vllm_otel_collector.otlp.base import Columns, NativeBlock, Payload, concat_columns, concat_payloads
from vllm_otel_collector.pipeline.deadletters import DeadLetters
from vllm_otel_collector.pipeline.queue import Entry, RequestQueue
from vllm_otel_collector.pipeline.spool import Spool
from vllm_otel_collector.plugins import Processor, SpanInterest
from vllm_otel_collector.selfmetrics import SelfMetrics
from vllm_otel_collector.store.errors import is_permanent

Insert = tuple[str, Payload, bool, tuple]  # (table, payload, must_succeed, label)

log = logging.getLogger(__name__)


class Abandoned(Exception):
    """Shutdown deadline passed while the store was failing."""


class PermanentInsertError(Exception):
    """A raw-table insert failed with an error that retrying cannot fix."""

    def __init__(self, table: str, label: tuple, cause: BaseException):
        super().__init__(f"{table}: {cause}")
        self.table, self.label, self.cause = table, label, cause


class Writer:
    """Batches → inserts, on the ``vllm-otel-writer`` thread.

    Args:
        store: where rows go (``insert``, ``insert_native``).
        processors / interests: the plug-ins' processors and what they need (None: every span).
        retry_max_wait_s: cap of the backoff between insert attempts, seconds.
        stopping: shutdown started (the writer drains the queue, then exits).
        abandon: shutdown deadline passed: a failing insert gives up (its requests stay spooled).
        dead_letters: where requests go that can never be stored.

    Attributes:
        store_ok: False while the last insert attempt failed.
        failing_since: ``time.monotonic()`` of the first failed attempt of the batch being retried, else None
            (``/readyz`` reports the writer stuck).
    """

    def __init__(self, store, spool: Spool, queue: RequestQueue, metrics: SelfMetrics, processors: list[Processor],
                 interests: list[SpanInterest] | None, retry_max_wait_s: float, stopping: threading.Event,
                 abandon: threading.Event, dead_letters: DeadLetters | None = None):
        self.store, self.spool, self.queue, self.metrics = store, spool, queue, metrics
        self.processors, self.interests, self.retry_max_wait_s = processors, interests, retry_max_wait_s
        self._stopping, self._abandon = stopping, abandon
        self.dead_letters = dead_letters or DeadLetters(spool.dir.parent / "dead-letters")
        self.store_ok = True
        self.failing_since: float | None = None
        self.last_error = ""

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

    def inserts(self, entries: list[Entry]) -> list[Insert]:
        """``[(table, payload, must_succeed, label), ...]`` of one batch, in insert order (module docstring); the
        label names the insert independently of the batch's other requests."""
        groups: dict[tuple[str, bool], list[Payload]] = {}
        for e in entries:
            for table, payload in e.batch.inserts():
                groups.setdefault((table, isinstance(payload, NativeBlock)), []).append(payload)
        span_keys = sorted((k for k in groups if k[0] == "otel_traces"), key=lambda k: not k[1])
        out: list[Insert] = [(k[0], concat_payloads(groups[k]), True, ("raw",) + k) for k in span_keys]
        spans: list[Columns] = []
        if self.processors:
            spans = [c for e in entries if (c := e.batch.span_columns(self.interests)) is not None]
        if spans:
            cols = concat_columns(spans)
            for i, proc in enumerate(self.processors):
                try:
                    out.extend((t, c, False, ("proc", i, j, t)) for j, (t, c) in enumerate(proc.process(cols)))
                except Exception:  # noqa: BLE001 - a processor bug must not block raw span storage
                    self.metrics.processor_errors.inc()
                    log.exception("processor %r failed on a batch of %d spans", proc, len(cols["TraceId"]))
        out.extend((k[0], concat_payloads(groups[k]), True, ("raw",) + k) for k in groups if k[0] != "otel_traces")
        return out

    def write(self, entries: list[Entry]) -> None:
        """Record (first time), insert every part of the batch; requests that can never be stored go to the dead
        letters. Raises ``Abandoned`` at the shutdown deadline."""
        started = time.perf_counter()
        if entries[0].manifest is None:  # OSError → the writer's retry path; nothing was inserted yet
            manifest = self.spool.record_batch([(e.seq, e.kind) for e in entries])
            for e in entries:
                e.manifest = manifest
        token = entries[0].manifest.token
        live, done = list(entries), set()
        while live:
            try:
                per_table: dict[str, int] = {}
                for table, payload, must, label in self.inserts(live):
                    n = per_table[table] = per_table.get(table, -1) + 1
                    if label not in done:
                        self._insert_with_retry(table, payload, must, f"{token}:{table}:{n}", label)
                        done.add(label)
                break
            except PermanentInsertError as exc:
                bad = self._isolate(live, exc, f"{token}:{exc.table}:{per_table[exc.table]}")
                done.add(exc.label)
                live = [e for e in live if e not in bad]
        self.failing_since = None
        self.metrics.write_latency.observe(time.perf_counter() - started)

    def _isolate(self, entries: list[Entry], failure: PermanentInsertError, token: str) -> list[Entry]:
        """Insert ``failure.table``'s rows request by request; dead-letter the requests that fail for good."""
        log.error("insert into %s failed permanently (%s): splitting the batch of %d request(s)", failure.table,
                  str(failure.cause).splitlines()[0][:200] if str(failure.cause) else type(failure.cause).__name__,
                  len(entries))
        native = failure.label[-1]
        bad = []
        for e in entries:
            mine = [p for t, p in e.batch.inserts() if t == failure.table and isinstance(p, NativeBlock) == native]
            if not mine:
                continue
            try:
                self._insert_with_retry(failure.table, concat_payloads(mine), True, f"{token}:{e.seq}",
                                        failure.label)
            except PermanentInsertError as exc:
                bad.append(e)
                self._dead_letter(e, failure.table, exc.cause)
        return bad

    def _dead_letter(self, e: Entry, table: str, cause: BaseException) -> None:
        error = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        while True:  # a spool copy must exist before the request counts as set aside
            try:
                self.dead_letters.add(e.seq, e.kind, self.spool.read(e.seq, e.kind), table, error)
                break
            except OSError as exc:
                log.error("cannot write dead letter %d (%s): %s; retrying", e.seq, e.kind, exc)
                if self._abandon.wait(1.0):
                    raise Abandoned() from None
        self.metrics.dead_lettered.labels(e.kind).inc(e.rows)
        log.error("request %d (%s, %d rows) moved to the dead letters: %s: %s", e.seq, e.kind, e.rows, table,
                  error[:200])

    def _insert_with_retry(self, table: str, payload: Payload, must_succeed: bool, token: str,
                           label: tuple = ()) -> None:
        """Insert, retrying transient errors (raw tables: forever; derived: 5 attempts, then dropped).

        Raises:
            PermanentInsertError: a raw-table insert failed with a permanent error (not retried).
            Abandoned: the shutdown deadline passed while retrying.
        """
        def before_sleep(state) -> None:
            self.store_ok = False
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            self.metrics.retried.inc()
            exc = state.outcome.exception()
            self.last_error = f"{table}: {str(exc).splitlines()[0][:200] if exc and str(exc) else type(exc).__name__}"
            if self._abandon.is_set():
                raise Abandoned()
            log.warning("insert into %s failed (attempt %d): %s", table, state.attempt_number, self.last_error)

        retrying = Retrying(
            wait=wait_exponential_jitter(initial=0.05, max=self.retry_max_wait_s),
            stop=(lambda s: False) if must_succeed else stop_after_attempt(5),
            retry=retry_if_exception(lambda e: not isinstance(e, Abandoned) and not is_permanent(e)),
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
        except Exception as exc:  # noqa: BLE001 - raw tables: permanent only; derived: bounded attempts
            if must_succeed:
                raise PermanentInsertError(table, label, exc) from exc
            self.metrics.processor_errors.inc()
            log.exception("dropping %d derived row(s) for %s after repeated failures",
                          payload.rows if isinstance(payload, NativeBlock) else len(next(iter(payload.values()))),
                          table)
            return
        self.store_ok = True
        self.failing_since = None
        self.metrics.written.labels(table).inc(rows)
