"""Out-of-process export: the API server hands compact records to a telemetry child (:mod:`.export_child`) that
builds spans and metrics with the OpenTelemetry SDK, so that SDK work (span objects, attribute hashing, OTLP
encoding, gRPC) is not paid on the vLLM frontend's CPU and GIL.

On by default when the SDK is configured from the environment (``opentelemetry-instrument``, or a programmatic
``opentelemetry.instrumentation.auto_instrumentation.initialize()``) and no provider object is passed to
``instrument()``; ``OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS=false`` turns it off, ``true`` forces it. A provider
object in code always means in-process writing (the child could not use it).

Two threads of the server write to the child, each one ``marshal``-ed message per batch over a pipe
(:class:`multiprocessing.connection.Connection`): the request tracker's writer (finished requests) and the engine
metrics' drain thread (engine-step facts, expanded into records by the child). The child is started lazily by the first of them, so vLLM
processes that have nothing to export (EngineCore, workers) never start one. When the child cannot be started or
dies, the link is marked down, the batch and every later record are written in-process, and each lost record (sent
but not confirmed by a flush) is counted in ``vllm_otel.instrumentation.errors`` with ``hook=export_process``.
The child dies with the server: it exits on EOF of the pipe, which the kernel delivers when the server exits or is
killed.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from opentelemetry.instrumentation.vllm.utils import logger, report_hook_error, timed

_PROPAGATOR = TraceContextTextMapPropagator()
#: Message kinds (first element of every marshalled message).
REQUESTS, ENGINE, ENGINE_INFO, FLUSH, FLUSHED = "R", "E", "I", "F", "f"
#: marshal format version (4: shared references for interned strings, i.e. repeated attribute keys are cheap).
MARSHAL_VERSION = 4
#: ``nice`` increment of the child over the server (Linux CFS: nice +10 weighs ~1/10 of the server's threads).
#: Telemetry must not compete with inference for CPU; the child shares no GIL with the server, so a descheduled child
#: holds nothing up: it falls behind and its pipe buffers.
CHILD_NICE = 10


class ExportLost(Exception):
    """The telemetry child is gone; records not confirmed by a flush are lost."""


def parent_tuple(context: Any, headers: Any) -> tuple | None:
    """The request span's parent as ``(trace_id, span_id, flags, is_remote, tracestate)``, or None. ``context`` is
    the OpenTelemetry Context captured at add (a local parent), ``headers`` W3C trace headers to extract otherwise."""
    ctx = context
    if ctx is None and headers:
        ctx = _PROPAGATOR.extract(headers)
    if ctx is None:
        return None
    sc = trace.get_current_span(ctx).get_span_context()
    if not sc.is_valid:
        return None
    return (sc.trace_id, sc.span_id, int(sc.trace_flags), sc.is_remote, sc.trace_state.to_header())


class ChildLink:
    """The pipe to one telemetry child. ``send`` is thread-safe (one lock per message, so messages never
    interleave); ``flush`` waits for the child's answer."""

    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opentelemetry.instrumentation.vllm.export_child", str(to_child_r),
             str(from_child_w), str(os.getpid())], pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
            close_fds=True, env=child_environment(os.environ))
        os.close(to_child_r)
        os.close(from_child_w)
        try:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICE)
        except (OSError, AttributeError):  # not permitted / not POSIX: normal priority
            pass
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        self.up = True
        self.unconfirmed = 0  # records sent since the last confirmed flush
        self._flushes = 0
        self._lock = threading.Lock()
        self._infos: set[int] = set()  # engine infos already announced to the child

    @timed("link.send")
    def send(self, message: tuple, records: int) -> None:
        """Send one message carrying ``records`` records; raise :class:`ExportLost` when the child is gone (the caller
        writes them in-process)."""
        data = marshal.dumps(message, MARSHAL_VERSION)
        with self._lock:
            if not self.up:
                raise ExportLost("telemetry child is down")
            try:
                self._send.send_bytes(data)
                self.unconfirmed += records
            except (OSError, ValueError) as exc:
                self._down_locked(exc)
                raise ExportLost(str(exc)) from exc

    def announce(self, key: int, info: tuple) -> None:
        """Send an engine's ``(model, buckets)`` once per ``key`` (before its first records)."""
        if key not in self._infos:
            self.send((ENGINE_INFO, key, info), 0)
            self._infos.add(key)

    def flush(self, timeout: float) -> bool:
        """Ask the child to force-flush its providers; True when it confirmed within ``timeout`` seconds."""
        with self._lock:
            if not self.up:
                return False
            self._flushes += 1
            n = self._flushes
            try:
                self._send.send_bytes(marshal.dumps((FLUSH, n), MARSHAL_VERSION))
                while self._recv.poll(timeout):
                    if marshal.loads(self._recv.recv_bytes()) == (FLUSHED, n):
                        self.unconfirmed = 0
                        return True
                return False
            except (OSError, EOFError, ValueError) as exc:
                self._down_locked(exc)
                return False

    def _down_locked(self, exc: BaseException) -> None:
        if self.up:
            self.up = False
            lost, self.unconfirmed = self.unconfirmed, 0
            logger.warning("vllm-otel: telemetry child exited (%s); %d unconfirmed records lost, writing in-process",
                           exc, lost)
            for _ in range(max(lost, 1)):
                report_hook_error("export_process", ExportLost(str(exc)))
            try:
                self.proc.poll()  # reap it (no zombie left behind)
            except OSError:
                pass

    def close(self, timeout: float = 10.0) -> None:
        """Flush, close the pipe (the child then shuts its providers down and exits) and wait for it."""
        if self.up:
            self.flush(timeout)
        with self._lock:
            self.up = False
            for conn in (self._send, self._recv):
                try:
                    conn.close()
                except OSError:
                    pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def child_environment(environ: Any) -> dict[str, str]:
    """The child's environment: the server's, without ``opentelemetry-instrument``'s ``sitecustomize`` directory on
    ``PYTHONPATH`` (the child configures the SDK itself from the same ``OTEL_*`` variables; re-running the whole
    auto-instrumentation there would load every instrumentor and configure the providers twice)."""
    env = dict(environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
             if p and not os.path.normpath(p).endswith(os.path.join("opentelemetry", "instrumentation",
                                                                     "auto_instrumentation"))]
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        env.pop("PYTHONPATH", None)
    return env


class LinkHolder:
    """The process's one telemetry child, started on first use by whichever thread needs it first. ``get()``
    returns the live link or None (disabled, failed to start, or down: the caller writes in-process)."""

    def __init__(self) -> None:
        self.enabled = False
        self.link: ChildLink | None = None
        self._lock = threading.Lock()

    def get(self) -> ChildLink | None:
        if not self.enabled:
            return None
        link = self.link
        if link is None:
            with self._lock:
                if self.link is None and self.enabled:
                    try:
                        self.link = ChildLink()
                    except Exception as exc:  # noqa: BLE001 - no child: in-process writing
                        self.enabled = False
                        report_hook_error("export_process", exc)
                        return None
                link = self.link
        return link if link is not None and link.up else None

    def up(self) -> bool:
        """True while a started child is alive (then the child, not this process, reports process metrics)."""
        link = self.link
        return link is not None and link.up

    def close(self) -> None:
        with self._lock:
            link, self.link, self.enabled = self.link, None, False
        if link is not None:
            link.close()


#: The process-wide holder (enabled by the instrumentor when its settings say so).
LINK = LinkHolder()


def engine_sink(batch: list, dropped: int) -> bool:
    """:attr:`.engine_metrics.EngineAggregator.sink`: send drained engine items ``[(info, engines, is_step,
    payload), ...]`` (step facts or records, :func:`.engine_metrics.records_of`) and the dropped-step count to the
    child in one message; False when there is no live child (or a value marshal cannot carry), and the caller
    aggregates them in-process."""
    link = LINK.get()
    if link is None:
        return False
    try:
        out = []
        for info, engines, is_step, payload in batch:
            key = id(info)
            link.announce(key, (info.model, info.buckets))
            out.append((key, engines, is_step, payload))
        link.send((ENGINE, out, dropped), len(out))
        return True
    except (ExportLost, ValueError):
        return False


def configured_from_environment() -> bool:
    """True when this process's SDK was set up by OpenTelemetry's auto-instrumentation (``opentelemetry-instrument``
    or ``auto_instrumentation.initialize()``), i.e. from the same ``OTEL_*`` variables the child reads, and an SDK
    tracer provider is installed."""
    if "opentelemetry.instrumentation.auto_instrumentation" not in sys.modules:
        return False
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return False
    return isinstance(trace.get_tracer_provider(), TracerProvider)
