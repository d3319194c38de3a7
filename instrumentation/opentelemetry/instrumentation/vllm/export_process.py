"""Out-of-process export (opt-in, ``OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS=true``): the API server hands each finished
request's compact record to a telemetry child (:mod:`.export_child`) that builds the spans and metrics with the SDK.

Only the tracker's writer thread talks to the child: it turns an entry into ``(parent, plan, summary)`` — numbers,
a few strings, the add-time attribute dict — and sends it down a pipe. The event loop only enqueues, as in-process.
Used only when the SDK is configured from the environment (no provider passed to ``instrument()``); a provider
object in code means in-process writing. When the child cannot be started or dies, the link is marked down, the
record and every later one are written in-process, and each lost record (sent but not confirmed by a flush) is
counted in ``vllm_otel.instrumentation.errors`` with ``hook=export_process``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from opentelemetry.instrumentation.vllm.utils import logger, report_hook_error, timed

_PROPAGATOR = TraceContextTextMapPropagator()


class ExportLost(Exception):
    """The telemetry child is gone; records not confirmed by a flush are lost."""


def parent_tuple(plan: Any) -> tuple | None:
    """The request span's parent as ``(trace_id, span_id, flags, is_remote, tracestate)``, or None."""
    ctx = plan.context
    if ctx is None and plan.headers:
        ctx = _PROPAGATOR.extract(plan.headers)
    if ctx is None:
        return None
    sc = trace.get_current_span(ctx).get_span_context()
    if not sc.is_valid:
        return None
    return (sc.trace_id, sc.span_id, int(sc.trace_flags), sc.is_remote, sc.trace_state.to_header())


class ChildLink:
    """The pipe to one telemetry child. All methods are called from the tracker's writer thread only."""

    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opentelemetry.instrumentation.vllm.export_child", str(to_child_r),
             str(from_child_w)], pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, close_fds=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        self.up = True
        self.unconfirmed = 0  # sent since the last confirmed flush
        self._flushes = 0
        self._lock = threading.Lock()

    @timed("writer.send")
    def send(self, parent: Any, plan: Any, summary: Any) -> None:
        """Raise :class:`ExportLost` when the child is gone (the caller writes the record in-process)."""
        try:
            self._send.send(("req", parent, plan, summary))
            self.unconfirmed += 1
        except (OSError, ValueError) as exc:
            self._down(exc)
            raise ExportLost(str(exc)) from exc

    def flush(self, timeout: float) -> bool:
        """Ask the child to force-flush its providers; True when it confirmed within ``timeout`` seconds."""
        if not self.up:
            return False
        self._flushes += 1
        try:
            self._send.send(("flush", self._flushes))
            while self._recv.poll(timeout):
                msg = self._recv.recv()
                if msg == ("flushed", self._flushes):
                    self.unconfirmed = 0
                    return True
            return False
        except (OSError, EOFError, ValueError) as exc:
            self._down(exc)
            return False

    def _down(self, exc: BaseException) -> None:
        if self.up:
            self.up = False
            lost = self.unconfirmed
            self.unconfirmed = 0
            logger.warning("vllm-otel: telemetry child exited (%s); %d unconfirmed records lost, writing in-process",
                           exc, lost)
            for _ in range(max(lost, 1)):
                report_hook_error("export_process", ExportLost(str(exc)))

    def close(self, timeout: float = 10.0) -> None:
        """Flush, close the pipe (the child then shuts its providers down and exits) and wait for it."""
        if self.up:
            self.flush(timeout)
        for conn in (self._send, self._recv):
            try:
                conn.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
