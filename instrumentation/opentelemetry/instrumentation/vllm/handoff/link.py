"""The pipe to the telemetry child (:mod:`.child`) and its lifecycle.

On by default when the SDK is configured from the environment (``opentelemetry-instrument``, or a programmatic
``opentelemetry.instrumentation.auto_instrumentation.initialize()``) and no provider object is passed to
``instrument()``; ``OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS=false`` turns it off, ``true`` forces it. A provider
object in code always means in-process writing (the child could not use it).

The child is started lazily by the first sender (:data:`LINK`), so vLLM processes that have nothing to export
(EngineCore, workers) never start one. When the child dies, the link is marked down, every lost record (sent but not
confirmed by a flush) is counted in ``vllm_otel.instrumentation.errors`` with ``hook=export_process``, the senders
write in-process (:mod:`.sink`) and, after a backoff, a new child is started (:class:`LinkHolder`). A child that
cannot be started at all leaves the process writing in-process. The child dies with the server: it exits
on EOF of the pipe, which the kernel delivers when the server exits or is killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

from opentelemetry import trace

from opentelemetry.instrumentation.vllm.handoff import wire
from opentelemetry.instrumentation.vllm.safety import count_hook_error, logger, report_hook_error, timed

#: The child's module (``python -m``).
CHILD_MODULE = "opentelemetry.instrumentation.vllm.handoff.child"
#: ``nice`` increment of the child over the server (Linux CFS: nice +10 weighs ~1/10 of the server's threads).
#: Telemetry must not compete with inference for CPU; the child shares no GIL with the server, so a descheduled child
#: holds nothing up: it falls behind and its pipe buffers.
CHILD_NICE = 10


class ExportLost(Exception):
    """The telemetry child is gone; records not confirmed by a flush are lost."""


class ChildLink:
    """The pipe to one telemetry child. ``send`` is thread-safe (one lock per message, so messages never
    interleave); ``flush`` waits for the child's answer."""

    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE, str(to_child_r),
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
        data = wire.dumps(message)
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
            self.send((wire.ENGINE_INFO, key, info), 0)
            self._infos.add(key)

    def flush(self, timeout: float) -> bool:
        """Ask the child to force-flush its providers; True when it confirmed within ``timeout`` seconds (waiting
        for the pipe counts: a sender blocked on a full pipe holds it)."""
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            if not self.up:
                return False
            self._flushes += 1
            n = self._flushes
            try:
                self._send.send_bytes(wire.dumps((wire.FLUSH, n)))
                while self._recv.poll(max(deadline - time.monotonic(), 0.0)):
                    if wire.loads(self._recv.recv_bytes()) == (wire.FLUSHED, n):
                        self.unconfirmed = 0
                        return True
                return False
            except (OSError, EOFError, ValueError) as exc:
                self._down_locked(exc)
                return False
        finally:
            self._lock.release()

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

    def discard(self) -> None:
        """Release a dead child's pipes and reap it (before a restart)."""
        got = self._lock.acquire(timeout=1.0)
        try:
            self.up = False
            _close_quietly((self._send, self._recv))
        finally:
            if got:
                self._lock.release()
        try:
            self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def close(self, timeout: float = 10.0) -> int:
        """Flush, close the pipe (the child then shuts its providers down within its own bound and exits) and wait
        for it — all within ``timeout`` seconds. A child still there at the end (stopped, or exporting to an endpoint
        that does not answer) is killed; the records it had not confirmed are lost, counted (``hook=export_process``)
        and logged once. Returns how many were lost."""
        deadline = time.monotonic() + timeout
        if self.up:
            self.flush(timeout / 2)  # half: the child's own provider shutdown needs the rest
        got = self._lock.acquire(timeout=max(min(1.0, deadline - time.monotonic()), 0.0))
        try:
            self.up = False
            lost, self.unconfirmed = self.unconfirmed, 0
            # The answer pipe always; the request pipe only under the lock (a sender blocked on a full pipe still
            # writes into it: that sender is released by the child's death below).
            if got:
                try:  # the child's bound: what is left of ours, less a margin to see it exit
                    self._send.send_bytes(wire.dumps((wire.CLOSE, max(deadline - time.monotonic() - 0.5, 0.1))))
                except (OSError, ValueError):
                    pass
            _close_quietly((self._send, self._recv) if got else (self._recv,))
        finally:
            if got:
                self._lock.release()
        try:
            self.proc.wait(max(deadline - time.monotonic(), 0.0))
            return 0
        except subprocess.TimeoutExpired:
            pass
        self.proc.kill()  # also ends a SIGSTOPped child
        try:
            self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        logger.warning("vllm-otel: telemetry child did not finish within the %.1f s shutdown bound; killed, "
                       "%d unconfirmed records lost", timeout, lost)
        count_hook_error("export_process", ExportLost("killed at shutdown"), lost)
        return lost


def _close_quietly(conns: Any) -> None:
    """Close pipe ends; one already closed or broken is fine."""
    for conn in conns:
        try:
            conn.close()
        except OSError:
            pass


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
    returns the live link or None (disabled, failed to start, or down: the caller writes in-process).

    A child that died (OOM-killed, crashed) is restarted by the first ``get()`` after a backoff of
    :func:`restart_delay_s` (1, 2, 4 … 60 s after each death; a child that lived :data:`HEALTHY_S` resets it), each
    restart counted in ``vllm_otel.instrumentation.errors`` (``hook=export_process.restart``) and logged; until
    then the server writes in-process. A child that cannot be started at all disables the child for good."""

    def __init__(self) -> None:
        self.enabled = False
        self.link: ChildLink | None = None
        self.restarts = 0  # children started after the first
        self._deaths = 0  # consecutive short-lived children (the backoff's exponent)
        self._down_since: float | None = None
        self._started_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> ChildLink | None:
        if not self.enabled:
            return None
        link = self.link
        if link is not None and link.up:
            return link
        with self._lock:
            link = self.link
            if not self.enabled:
                return None
            if link is not None and not link.up:
                now = time.monotonic()
                if self._down_since is None:  # first look since it died
                    self._down_since = now
                    self._deaths = 0 if now - self._started_at >= HEALTHY_S else self._deaths + 1
                if now - self._down_since < restart_delay_s(self._deaths):
                    return None
                self.restarts += 1
                count_hook_error("export_process.restart", ExportLost("telemetry child restarted"), 1)
                logger.warning("vllm-otel: restarting the telemetry child (restart %d)", self.restarts)
                link.discard()
                link = None
            if link is None:
                try:
                    self.link = link = ChildLink()
                    self._down_since, self._started_at = None, time.monotonic()
                except Exception as exc:  # noqa: BLE001 - no child: in-process writing
                    self.enabled = False
                    report_hook_error("export_process", exc)
                    return None
        return link if link.up else None

    def up(self) -> bool:
        """True while a started child is alive (then the child, not this process, reports process metrics)."""
        link = self.link
        return link is not None and link.up

    def close(self, timeout: float = 10.0) -> int:
        """Close the child (:meth:`ChildLink.close`, within ``timeout`` seconds); returns the records lost."""
        with self._lock:
            link, self.link, self.enabled = self.link, None, False
        return link.close(timeout) if link is not None else 0


#: A child that lived this many seconds was healthy: the next restart waits the shortest delay again.
HEALTHY_S = 120.0


def restart_delay_s(deaths: int) -> float:
    """Seconds to wait before restarting a child after ``deaths`` consecutive short-lived ones: ``min(60, 2**n)``
    (1 s after a healthy child died)."""
    return float(min(60, 2 ** min(max(deaths, 0), 6)))


#: The process-wide holder (enabled by the instrumentor when its settings say so).
LINK = LinkHolder()


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
