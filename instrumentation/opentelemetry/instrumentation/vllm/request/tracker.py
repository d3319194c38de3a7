"""In-flight requests of this process: one entry per request from ``OutputProcessor.add_request`` to its finish.

When the request enters vLLM's ``OutputProcessor`` the tracker captures its parent context and a few request fields
(:class:`.facts.Capture`: references and scalars only, on vLLM's event loop); at completion it hands the entry to the
request sink (:mod:`..handoff.sink`), which writes it off the output loop — the span starts at vLLM's wall-clock
``arrival_time``, so it is the same span as if started then. Per generated token and per engine step nothing happens
here: the per-request cost on vLLM's output loop is a handful of dict operations at add and at finish.

In-flight state is keyed by vLLM's internal request id (parallel-sampling children share their parent's entry), is
bounded by ``Settings.max_in_flight``, and a sweeper thread ends requests that exceed ``Settings.request_timeout_s``
with ``error.type=timeout`` (zombies).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.request.facts import REQUEST_INFO, Capture, RequestInfo
from opentelemetry.instrumentation.vllm.safety import guarded, report_hook_error
from opentelemetry.instrumentation.vllm.settings import Settings

#: Seconds after vLLM's ``_finish_request`` without a finish before the request is ended as an error (the normal
#: finish follows within the same ``process_outputs`` call, microseconds later).
RELEASE_GRACE_S = 1.0
#: ``error.type`` of a request vLLM ended with an error output (vllm >= 0.33: e.g. rejected by a paused engine).
ERROR_REQUEST = "request_error"
#: What the tracker hands over per finished request: ``(entry, end_wall, reason, error_type)``.
Finished = tuple


class RequestSink(Protocol):
    """Where finished requests go (:class:`..handoff.sink.RequestSink`): ``submit`` queues one (returns it when the
    caller must write it itself: backpressure), ``write_one`` writes one now, ``flush_marker`` queues a flush and
    returns its event (None: nothing to wait for), ``close`` stops after writing everything."""

    def submit(self, item: Finished) -> Finished | None: ...

    def write_one(self, item: Finished) -> None: ...

    def flush_marker(self) -> threading.Event | None: ...

    def close(self) -> None: ...


class _Entry:
    __slots__ = ("key", "capture", "owner", "states", "pending", "arrival", "deadline", "operation", "model",
                 "reasons", "prefill_stats")

    def __init__(self, key: str, capture: "Capture | None", owner: int, arrival: float, deadline: float,
                 operation: str, model: str) -> None:
        self.key = key
        self.capture = capture  # what the request span's plan is built from; None: vLLM's native span is the span
        self.owner = owner
        self.states: list[Any] = []
        self.pending = 0
        self.arrival = arrival
        self.deadline = deadline
        self.operation = operation
        self.model = model
        self.reasons: list[str] = []
        self.prefill_stats: Any = None  # vLLM PrefillStats of the first state (local vs external cache split)


class RequestTracker:
    """In-flight requests of this process. All public methods are safe to call from vLLM's threads."""

    def __init__(self, settings: Settings, sink: RequestSink) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}  # key (parent or request id) -> entry, insertion = deadline order
        self._by_internal: dict[str, _Entry] = {}  # vLLM internal request id -> entry
        self._labels: OrderedDict[str, RequestInfo] = OrderedDict()  # external request id -> serving-layer info
        # internal id -> (wall, monotonic) of vLLM's _finish_request not yet followed by a finish (vllm >= 0.33)
        self._released: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        # Finished requests are written (span attributes, children, end, metrics) by the sink's thread, off vLLM's
        # output loop (or sent to the telemetry child): the finish hook itself only pops the entry and enqueues it.
        self.sink = sink

    # ---- introspection (tests, docs) ----------------------------------------------------------------------------
    def in_flight(self) -> int:
        """Number of requests currently tracked (0 after load drains)."""
        return len(self._entries)

    @guarded("serving.label")
    def label(self, external_request_id: str, info: RequestInfo) -> None:
        """Remember the serving layer's info for a request about to be added (``AsyncLLM.generate`` is called in the
        handler's task, but vLLM may consume the generator in another task, where the context variable is gone)."""
        labels = self._labels  # only vLLM's event loop (or the offline caller's thread) labels and adds
        labels[external_request_id] = info
        if len(labels) > 4096:  # generators created but never started
            labels.popitem(last=False)

    # ---- add -------------------------------------------------------------------------------------------------------
    @guarded("request.add")
    def on_add(self, processor: Any, request: Any, prompt: str | None, parent_req: Any) -> None:
        """Called after ``OutputProcessor.add_request``: track the request (or join the parent's entry). Only
        references and a few scalars are taken here, on vLLM's event loop; the span's attributes are built when it
        is written (:func:`.facts.build_plan`, the sink's thread)."""
        rid = request.request_id
        req_state = processor.request_states.get(rid)
        if req_state is None or rid in self._by_internal:
            return  # streaming-input continuation of a tracked request
        key = parent_req.request_id if parent_req is not None else rid
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.states.append(req_state)
                entry.pending += 1
                self._by_internal[rid] = entry
                return
            info = self._labels.pop(request.external_req_id, None) if self._labels else None
        if len(self._entries) >= self._settings.max_in_flight:
            self._evict_if_full()
        info = info or REQUEST_INFO.get()
        operation = info.operation if info is not None else sc.OP_TEXT_COMPLETION
        model = (info.model if info is not None and info.model else None) or getattr(processor, "_otel_model", "")
        arrival = float(request.arrival_time or time.time())
        capture = None
        if not getattr(processor, "tracing_enabled", False):  # vLLM's native llm_request span is the request span
            parent_ctx, headers, kind = None, None, SpanKind.SERVER
            current = trace.get_current_span().get_span_context()
            if current.is_valid:
                parent_ctx = otel_context.get_current()  # e.g. the FastAPI server span
                if not current.is_remote:
                    kind = SpanKind.INTERNAL  # a local span already stands for the incoming request
            else:
                headers = request.trace_headers or (info.trace_headers if info is not None else None)
            engines = getattr(processor, "_otel_arrival", None)  # engine/arrival.py: vLLM's latest stats
            capture = Capture(request.sampling_params, request.external_req_id or rid,
                               parent_req.external_req_id if parent_req is not None else None,
                               parent_req.n if parent_req is not None else None,
                               getattr(getattr(request, "lora_request", None), "lora_name", None),
                               prompt if self._settings.capture_content else None,
                               req_state.queue is not None, info, parent_ctx, headers, kind, arrival,
                               engines.read(getattr(request, "data_parallel_rank", None))
                               if engines is not None else None)
        entry = _Entry(key, capture, id(processor), arrival, time.monotonic() + self._settings.request_timeout_s,
                       operation, model)
        entry.states.append(req_state)
        entry.pending = 1
        with self._lock:
            self._entries[key] = entry
            self._by_internal[rid] = entry
        if self._sweeper is None:
            self._ensure_sweeper()

    @guarded("request.prefill")
    def note_prefill(self, engine_core_outputs: Any) -> None:
        """Keep the first state's ``PrefillStats`` (sent once per request, with its first output) for the prompt
        tokens by source. One attribute read per output of the step; a dict lookup only for prefill outputs."""
        by_internal = self._by_internal
        for o in engine_core_outputs:
            ps = o.prefill_stats
            if ps is not None:
                entry = by_internal.get(o.request_id)
                if entry is not None and entry.prefill_stats is None and entry.states[0].request_id == o.request_id:
                    entry.prefill_stats = ps

    # ---- finish ----------------------------------------------------------------------------------------------------
    @guarded("request.finish")
    def finished(self, req_state: Any, finish_reason: Any, iteration_stats: Any) -> None:
        """After ``OutputProcessor._update_stats_from_finished`` (vLLM calls it once per request that finished in
        ``process_outputs``, right after ``_finish_request``): the reason is the one vLLM recorded (the engine's, or
        ``stop`` for a stop string the frontend matched); end time = vLLM's iteration timestamp."""
        end = iteration_stats.iteration_timestamp if iteration_stats is not None else time.time()
        self.finish(req_state.request_id, str(finish_reason) if finish_reason is not None else sc.FINISH_STOP, end)

    @guarded("request.abort")
    def abort(self, request_ids: Any, end_wall: float) -> None:
        """``OutputProcessor.abort_requests`` returned these internal ids: finish each as ``abort``."""
        for request_id in request_ids:
            self.finish(request_id, sc.FINISH_ABORT, end_wall)

    @guarded("request.released")
    def released(self, request_id: str, end_wall: float) -> None:
        """vLLM released the request (``_finish_request``). On the normal path its finish follows within the same
        call; a request rejected with an error output (vllm >= 0.33) gets none: :meth:`sweep` ends it after
        :data:`RELEASE_GRACE_S` as ``error`` (``error.type=request_error``) at ``end_wall``."""
        if request_id in self._by_internal:
            self._released[request_id] = (end_wall, time.monotonic())

    def finish(self, request_id: str, reason: str, end_wall: float, error_type: str | None = None) -> None:
        """Account one internal request as finished; the span ends when all its parallel-sampling siblings have."""
        with self._lock:
            if self._released:
                self._released.pop(request_id, None)
            entry = self._by_internal.pop(request_id, None)
            if entry is None:
                return
            entry.reasons.append(reason)
            entry.pending -= 1
            if entry.pending > 0:
                return
            self._entries.pop(entry.key, None)
            if reason == sc.FINISH_ERROR and error_type is None:
                error_type = "engine_error"
            inline = self._finalize_locked(entry, end_wall, reason, error_type)
        self._write_inline((inline,))

    @guarded("request.error")
    def fail_all(self, processor: Any, exc: BaseException) -> None:
        """Engine died (``OutputProcessor.propagate_error``): end every request of that processor with ERROR."""
        owner = id(processor)
        with self._lock:
            victims = [e for e in self._entries.values() if e.owner == owner]
            inline = []
            for e in victims:
                self._drop_locked(e)
                inline.append(self._finalize_locked(e, time.time(), sc.FINISH_ERROR, type(exc).__qualname__))
        self._write_inline(inline)

    def _drop_locked(self, entry: _Entry) -> None:
        self._entries.pop(entry.key, None)
        for s in entry.states:
            if self._by_internal.get(s.request_id) is entry:
                del self._by_internal[s.request_id]

    # ---- zombies ---------------------------------------------------------------------------------------------------
    def _evict_if_full(self) -> None:
        inline = []
        with self._lock:
            while len(self._entries) >= self._settings.max_in_flight:
                oldest = next(iter(self._entries.values()))
                self._drop_locked(oldest)
                inline.append(self._finalize_locked(oldest, time.time(), sc.FINISH_TIMEOUT, sc.FINISH_TIMEOUT))
        self._write_inline(inline)

    def sweep(self, now_monotonic: float | None = None) -> int:
        """End every entry past its deadline as a zombie (status ERROR, ``error.type=timeout``) and every request
        vLLM released without a finish (:meth:`released`) as an error; returns how many zombies."""
        now = time.monotonic() if now_monotonic is None else now_monotonic
        if self._released:
            for rid, (wall, mono) in list(self._released.items()):
                if now - mono >= RELEASE_GRACE_S:
                    self.finish(rid, sc.FINISH_ERROR, wall, ERROR_REQUEST)
        expired = []
        with self._lock:
            for entry in self._entries.values():  # insertion order == deadline order
                if entry.deadline > now:
                    break
                expired.append(entry)
            inline = []
            for entry in expired:
                self._drop_locked(entry)
                inline.append(self._finalize_locked(entry, time.time(), sc.FINISH_TIMEOUT, sc.FINISH_TIMEOUT))
        self._write_inline(inline)
        return len(expired)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is not None:
            return
        period = max(0.05, min(1.0, self._settings.request_timeout_s / 4))

        def run() -> None:
            while not self._stop.wait(period):
                try:
                    self.sweep()
                except Exception as exc:  # noqa: BLE001
                    report_hook_error("request.sweep", exc)

        self._sweeper = threading.Thread(target=run, name="vllm-otel-zombie-sweeper", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        """Stop the sweeper, end all in-flight spans as zombies, write everything queued and stop the writer
        (used by ``uninstrument``)."""
        self._stop.set()
        with self._lock:
            rest = list(self._entries.values())
            self._entries.clear()
            self._by_internal.clear()
            inline = [self._finalize_locked(e, time.time(), sc.FINISH_TIMEOUT, sc.FINISH_TIMEOUT) for e in rest]
        self._write_inline(inline)
        self.flush()
        self.sink.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every finished request queued so far is written (its span ended, its metrics recorded, or
        confirmed by the telemetry child); False on timeout. A no-op on the writer thread itself (e.g. an exporter
        flushing from inside a write)."""
        with self._lock:  # every entry removed from the in-flight maps before this point is already queued
            done = self.sink.flush_marker()
        return True if done is None else done.wait(timeout)

    # ---- the one place a request's telemetry is handed over ------------------------------------------------------
    def _finalize_locked(self, entry: _Entry, end_wall: float, reason: str, error_type: str | None) -> Any:
        """Hand a finished entry to the sink; called with ``self._lock`` held, in the same critical section that
        removed it from the in-flight maps (so a concurrent :meth:`flush` never misses it). Returns the item to
        write inline after the lock is released when the sink is backed up (backpressure), else None."""
        return self.sink.submit((entry, end_wall, reason, error_type))

    def _write_inline(self, items: Any) -> None:
        for item in items:
            if item is not None:
                self.sink.write_one(item)
