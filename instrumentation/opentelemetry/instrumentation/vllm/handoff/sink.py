"""Where a finished request and an engine batch go: to the telemetry child when one is up, else written here — the
rule, once.

:class:`RequestSink` owns the request writer thread (a :class:`..batcher.Batcher` named ``vllm-otel-writer``): the
tracker submits ``(entry, end_wall, reason, error_type)`` items; each batch becomes one message to the child (values read
from vLLM's objects, :func:`.wire.request_record`; the child derives the summary, attributes and span plan and
builds spans and metrics) or is written here with the SDK
(:func:`..request.emit.emit`: providers passed in code, child disabled, failed or dead). :func:`engine_to_child` is
the engine aggregator's sink, the same rule for engine steps.

Bounds: with a live child, beyond :data:`MAX_QUEUED` waiting items a finished request is dropped and counted
(``vllm_otel.instrumentation.errors``, ``hook=export_queue``): vLLM's event loop never waits for telemetry. Writing
in-process, the same bound makes the finishing thread write the item itself (backpressure, nothing lost).

**The flush chain** (what ``TracerProvider``/``MeterProvider`` ``force_flush()``/``shutdown()`` and the return of an
offline ``LLM`` call include — every request finished and every engine step recorded before it):

1. :mod:`..hooks.sdk_flush` (or :mod:`..hooks.engines`' ``_run_engine``) calls ``RequestTracker.flush``;
2. the tracker, under its lock (every finished request is submitted by then), queues a flush marker here;
3. this sink's thread writes or sends every request before the marker, then (``on_marker``) with a live child:
   drains the engine queue (its steps go down the pipe first) and asks the child to force-flush its providers
   (``ChildLink.flush``); then it sets the marker;
4. the SDK's own ``force_flush`` runs (in-process providers; the engine metrics' observable callbacks drain the
   engine queue once more at collection).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from opentelemetry import trace

from opentelemetry.instrumentation.vllm import state
from opentelemetry.instrumentation.vllm.batcher import Batcher
from opentelemetry.instrumentation.vllm.handoff import wire
from opentelemetry.instrumentation.vllm.handoff.link import LINK, ExportLost, LinkHolder
from opentelemetry.instrumentation.vllm.request.emit import emit
from opentelemetry.instrumentation.vllm.request.instruments import RequestInstruments
from opentelemetry.instrumentation.vllm.safety import report_hook_error
from opentelemetry.instrumentation.vllm.settings import Settings

#: Items waiting for the writer beyond which a request is dropped (child) or written inline (in-process).
MAX_QUEUED = 10_000
#: Most items taken from the queue for one message to the child.
MAX_BATCH = 512
#: Seconds the writer waits after the first finished request of a batch for more to arrive (a flush or close cuts it
#: short). One wake-up and one message per batch instead of per request (docs/BENCHMARKS.md §1b).
LINGER_S = 0.5
_CHILD_FLUSH_S = 5.0


class QueueFull(Exception):
    """The telemetry child cannot keep up; a finished request was dropped (counted)."""


class RequestSink:
    """Finished requests → the telemetry child, or the SDK here. ``before_child_flush`` runs before each flush of
    the child (the instrumentor passes the engine aggregator's drain: step 3 of the flush chain)."""

    def __init__(self, tracer: trace.Tracer, instruments: RequestInstruments, settings: Settings,
                 link: LinkHolder = LINK, before_child_flush: Callable[[], Any] | None = None) -> None:
        self._tracer = tracer
        self._inst = instruments
        self._settings = settings
        self._link = link
        self._before_child_flush = before_child_flush
        self.batcher = Batcher("vllm-otel-writer", self.write, linger_s=LINGER_S, max_batch=MAX_BATCH,
                               max_queued=MAX_QUEUED, on_marker=self._flush_child,
                               hook="request.finalize")

    # ---- the tracker's side (called with its lock held) -----------------------------------------------------------
    def submit(self, item: tuple) -> tuple | None:
        """Queue one finished request; returns it when the caller must write it inline (in-process backpressure)."""
        if self.batcher.put(item):
            return None
        if self._link.up():
            report_hook_error("export_queue", QueueFull(f"more than {MAX_QUEUED} finished requests waiting"))
            return None
        return item

    def flush_marker(self) -> Any:
        """Queue a flush (step 2 of the chain); its event, or None when there is nothing to wait for."""
        return self.batcher.flush_marker()

    def close(self) -> None:
        """Stop the writer thread after everything queued is written."""
        self.batcher.close()

    # ---- the writer thread --------------------------------------------------------------------------------------
    def _flush_child(self) -> None:
        link = self._link.get()
        if link is not None:
            if self._before_child_flush is not None:
                self._before_child_flush()  # engine steps recorded so far go down the pipe before the flush message
            deadline = state.exit_deadline()  # at exit: within the shutdown bound
            timeout = _CHILD_FLUSH_S if deadline is None else min(_CHILD_FLUSH_S, deadline - time.monotonic())
            link.flush(max(timeout, 0.0))  # the child's providers include everything sent so far

    def write(self, items: list[tuple]) -> None:
        """Write finished requests: one message to the child when it is up, else here one by one."""
        if not items:
            return
        link = self._link.get()
        if link is not None:
            out = []
            for item in items:
                try:
                    out.append(self._record(*item))
                except Exception as exc:  # noqa: BLE001
                    report_hook_error("request.finalize", exc)
            try:
                link.send((wire.REQUESTS, out), len(out))
                return
            except (ExportLost, ValueError):  # child gone, or a value marshal cannot carry: written here
                pass
        for item in items:
            self.write_one(item)

    def _record(self, entry: Any, end_wall: float, reason: str, error_type: str | None) -> tuple:
        return wire.request_record(entry, end_wall, reason, error_type, self._settings.capture_content)

    def write_one(self, item: tuple) -> None:
        """Write one finished request with this process's SDK (never raises): the same record and the same reading
        of it as the telemetry child's."""
        try:
            parent, plan, summary = wire.read_request(self._record(*item))
        except Exception as exc:  # noqa: BLE001
            report_hook_error("request.finalize", exc)
            return
        emit(self._tracer, self._settings, self._inst, plan, parent, summary)


def engine_to_child(batch: list, dropped: int, link_holder: LinkHolder = LINK) -> bool:
    """The engine aggregator's sink: send drained engine items ``[(info, engines, is_step, payload), ...]`` and the
    dropped-step count to the child in one message; False when there is no live child (or a value marshal cannot
    carry), and the caller aggregates them here."""
    link = link_holder.get()
    if link is None:
        return False
    try:
        out = []
        for info, engines, is_step, payload in batch:
            key = id(info)
            link.announce(key, (info.model, info.buckets))
            out.append((key, engines, is_step, payload))
        link.send((wire.ENGINE, out, dropped), len(out))
        return True
    except (ExportLost, ValueError):
        return False


def snapshot_to_child(link: Any, model: str, start_ns: int, families: list) -> None:
    """The registry source's sink (:mod:`..engine.source`): one snapshot of vLLM's registry down ``link`` (raises
    :class:`.link.ExportLost` when the child is gone)."""
    link.send((wire.ENGINE_SNAPSHOT, model, start_ns, families), 0)
