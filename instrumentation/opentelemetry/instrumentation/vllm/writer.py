"""The request writer: one thread that turns finished requests into telemetry, off vLLM's output loop.

The tracker (:mod:`.requests`) hands over ``(entry, end_wall, reason, error_type)`` items; the writer waits
:data:`LINGER_S` after the first one (a flush does not wait), takes every item queued by then in one go and either

- sends them to the telemetry child in **one** message (:mod:`.export_process`: facts and add-time attributes only,
  the child builds spans and metrics), or
- writes them here with the SDK (no child: providers passed in code, child disabled, failed or dead).

Bounds: with a live child, beyond :data:`MAX_QUEUED` waiting items a finished request is dropped and counted
(``vllm_otel.instrumentation.errors``, ``hook=export_queue``): vLLM's event loop never waits for telemetry. Writing
in-process, the same bound makes the finishing thread write the item itself (backpressure, nothing lost).
Flushes are queued items too, so a flush covers every request finished before it.
"""

from __future__ import annotations

import atexit
import queue
import threading
from typing import Any

from opentelemetry import trace

from opentelemetry.instrumentation.vllm import engine_metrics
from opentelemetry.instrumentation.vllm.export_process import LINK, REQUESTS, ExportLost, parent_tuple
from opentelemetry.instrumentation.vllm.instruments import RequestInstruments
from opentelemetry.instrumentation.vllm.record import record_metrics, start_span, write_span
from opentelemetry.instrumentation.vllm.summary import summarize
from opentelemetry.instrumentation.vllm.utils import Settings, report_hook_error, timed

#: Items waiting for the writer beyond which a request is dropped (child) or written inline (in-process).
MAX_QUEUED = 10_000
#: Most items taken from the queue for one message to the child.
MAX_BATCH = 512
#: Seconds the writer waits after the first finished request of a batch for more to arrive (a flush or close cuts it
#: short). One wake-up and one message per batch instead of per request: on a busy frontend each wake-up of a cold
#: thread costs more than the work it does (docs/BENCHMARKS.md §1b).
LINGER_S = 0.5


class QueueFull(Exception):
    """The telemetry child cannot keep up; a finished request was dropped (counted)."""


class RequestWriter:
    """Owns the writer thread (started by the first item). ``submit``/``flush_event`` are called with the
    tracker's lock held, so that a flush is ordered after every request removed from the in-flight maps."""

    def __init__(self, tracer: trace.Tracer, instruments: RequestInstruments, settings: Settings,
                 build_plan: Any) -> None:
        self._tracer = tracer
        self._inst = instruments
        self._settings = settings
        self._build_plan = build_plan  # (capture, operation, model) -> _SpanPlan
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()  # set by flush/close: stop lingering
        self.thread: threading.Thread | None = None

    def _start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="vllm-otel-writer", daemon=True)
            self.thread.start()
            # atexit runs LIFO: this flush precedes the SDK provider's shutdown registered before us.
            atexit.register(self._flush_at_exit)

    def submit(self, item: tuple) -> tuple | None:
        """Queue one finished request; returns it when the caller must write it inline (in-process backpressure)."""
        self._start()
        if self._q.qsize() > MAX_QUEUED:
            if LINK.up():
                report_hook_error("export_queue", QueueFull(f"more than {MAX_QUEUED} finished requests waiting"))
                return None
            return item
        self._q.put(item)
        return None

    def flush_event(self) -> threading.Event | None:
        """Queue a flush marker; None when there is nothing to wait for (no writer, or called on the writer)."""
        thread = self.thread
        if thread is None or threading.current_thread() is thread or not thread.is_alive():
            return None
        done = threading.Event()
        self._q.put(done)
        self._wake.set()
        return done

    def _flush_at_exit(self) -> None:
        with_event = self.flush_event()
        if with_event is not None:
            with_event.wait(5.0)

    def close(self) -> None:
        """Stop the thread after everything queued is written."""
        if self.thread is not None and self.thread.is_alive():
            self._q.put(None)
            self._wake.set()
            self.thread.join(5.0)

    # ---- the writer thread ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        get, get_nowait = self._q.get, self._q.get_nowait
        while True:
            batch = [get()]
            if isinstance(batch[0], tuple) and not self._wake.is_set():
                self._wake.wait(LINGER_S)
            self._wake.clear()
            try:
                while len(batch) < MAX_BATCH:
                    batch.append(get_nowait())
            except queue.Empty:
                pass
            items: list[tuple] = []
            for it in batch:
                if it is None:
                    self.write(items)
                    return
                if isinstance(it, threading.Event):
                    self.write(items)
                    items = []
                    self._flush_child()
                    it.set()
                else:
                    items.append(it)
            self.write(items)

    def _flush_child(self) -> None:
        link = LINK.get()
        if link is not None:
            engine_metrics.drain()  # engine steps recorded so far go down the pipe before the flush message
            link.flush(5.0)  # the child's providers include everything sent so far

    def write(self, items: list[tuple]) -> None:
        """Write finished requests: one message to the child when it is up, else in-process one by one."""
        if not items:
            return
        link = LINK.get()
        if link is not None:
            out = []
            for item in items:
                try:
                    out.append(self._compact(*item))
                except Exception as exc:  # noqa: BLE001
                    report_hook_error("request.finalize", exc)
            try:
                link.send((REQUESTS, out), len(out))
                return
            except (ExportLost, ValueError):  # child gone, or a value marshal cannot carry: written here
                pass
        for item in items:
            self.write_one(*item)

    @timed("writer.compact")
    def _compact(self, entry: Any, end_wall: float, reason: str, error_type: str | None) -> tuple:
        summary = summarize(entry, end_wall, reason, error_type, self._settings.capture_content)
        if entry.capture is None:
            return None, None, summary.as_tuple()
        plan = self._build_plan(entry.capture, entry.operation, entry.model)
        return (parent_tuple(plan.context, plan.headers), (plan.name, plan.start_ns, plan.attrs, plan.kind.value),
                summary.as_tuple())

    def write_one(self, entry: Any, end_wall: float, reason: str, error_type: str | None) -> None:
        """Write one finished request with this process's SDK (never raises)."""
        span = None
        try:
            summary = summarize(entry, end_wall, reason, error_type, self._settings.capture_content)
            if entry.capture is not None:
                plan = self._build_plan(entry.capture, entry.operation, entry.model)
                span = start_span(self._tracer, plan)
                write_span(self._tracer, self._settings, span, plan, summary)
            record_metrics(self._inst, summary, span)
        except Exception as exc:  # noqa: BLE001
            report_hook_error("request.finalize", exc)
            if span is not None and span.is_recording():
                span.end()
