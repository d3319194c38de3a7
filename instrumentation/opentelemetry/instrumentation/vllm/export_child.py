"""The telemetry child process: builds request spans and all metrics with the OpenTelemetry SDK, off the vLLM API
server (see :mod:`.export_process`).

Started as ``python -m opentelemetry.instrumentation.vllm.export_child FD_IN FD_OUT SERVER_PID`` (a plain interpreter:
no vLLM import, no auto-instrumentation). The SDK is configured from the same ``OTEL_*`` environment as
``opentelemetry-instrument`` (the distro's defaults and configurator: exporter, endpoint, headers, resource, sampler).
Messages are ``marshal``-ed tuples, one per batch:

- ``("R", [(parent, plan, summary), ...])`` — finished requests. ``parent`` = ``(trace_id, span_id, trace_flags,
  is_remote, tracestate)`` or None; ``plan`` = ``(name, start_ns, attrs, kind)`` or None (vLLM native tracing on:
  metrics only); ``summary`` = :meth:`.summary.RequestSummary.as_tuple`. The span is started under ``parent`` (the
  SDK sampler honours its sampled flag).
- ``("I", key, (model, buckets))`` — an engine's model name and vLLM bucket boundaries, before its first records.
- ``("E", [(key, engines, is_step, payload), ...], dropped)`` — drained engine items: a step's
  :func:`.engine_convert.step_facts` (``is_step``), expanded here by :func:`.engine_convert.step_records`, or
  records (sleep state, admission rejections, initial values), applied to this process's
  :class:`.engine_metrics.EngineAggregator`; ``dropped`` steps the server's queue could not hold.
- ``("F", n)`` — drain, force-flush both providers, answer ``("f", n)``.
- EOF (the server exited or was killed): flush, shut the providers down, exit. The child never outlives the server.

The server's process metrics (``process.cpu.utilization``, ``process.memory.usage`` of ``SERVER_PID``) and NVML GPU
gauges are observed here too, so the server's own metric reader has (almost) nothing to collect.
"""

from __future__ import annotations

import marshal
import os
import sys
from typing import Any

REQUESTS, ENGINE, ENGINE_INFO, FLUSH, FLUSHED = "R", "E", "I", "F", "f"  # same as export_process (no SDK import)


def _configure() -> tuple[Any, Any]:
    from opentelemetry import metrics, trace

    os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
    try:
        from opentelemetry.distro import OpenTelemetryConfigurator, OpenTelemetryDistro

        OpenTelemetryDistro().configure()
        OpenTelemetryConfigurator().configure()
    except ImportError:  # no distro: the SDK's own configurator reads the same variables
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator

        _OTelSDKConfigurator().configure()
    return trace.get_tracer_provider(), metrics.get_meter_provider()


def _parent_context(parent: Any) -> Any:
    if parent is None:
        return None
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    trace_id, span_id, flags, is_remote, tracestate = parent
    ctx = SpanContext(trace_id, span_id, is_remote=is_remote, trace_flags=TraceFlags(flags),
                      trace_state=TraceState.from_header([tracestate]) if tracestate else None)
    return trace.set_span_in_context(NonRecordingSpan(ctx))


class Child:
    """What the child holds: tracer, the request instruments, an engine aggregator, engine infos by key."""

    def __init__(self, tp: Any, mp: Any, server_pid: int) -> None:
        from opentelemetry.instrumentation.vllm import utils
        from opentelemetry.instrumentation.vllm.engine_metrics import EngineAggregator
        from opentelemetry.instrumentation.vllm.instruments import RequestInstruments, register_host_observers

        scope = "opentelemetry.instrumentation.vllm"
        self.tp, self.mp = tp, mp
        self.tracer = tp.get_tracer(scope)
        meter = mp.get_meter(scope)
        self.inst = RequestInstruments(meter)
        utils.set_error_counter(self.inst.hook_errors)
        self.engine = EngineAggregator(start_thread=False)
        self.engine.bind(meter)
        register_host_observers(meter, server_pid)
        self.settings = utils.Settings.from_env()
        self.infos: dict[int, Any] = {}
        self.written = 0

    def requests(self, batch: list) -> None:
        from opentelemetry.trace import SpanKind

        from opentelemetry.instrumentation.vllm.record import record_metrics, write_span
        from opentelemetry.instrumentation.vllm.requests import _SpanPlan
        from opentelemetry.instrumentation.vllm.summary import RequestSummary

        for parent, plan, fields in batch:
            span = None
            try:
                summary = RequestSummary.from_tuple(fields)
                if plan is not None:
                    name, start_ns, attrs, kind = plan
                    span = self.tracer.start_span(name, context=_parent_context(parent), kind=SpanKind(kind),
                                                  start_time=start_ns, attributes=attrs)
                    write_span(self.tracer, self.settings, span, _SpanPlan(name, None, None, start_ns, attrs),
                               summary)
                record_metrics(self.inst, summary, span)
                self.written += 1
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the child
                from opentelemetry.instrumentation.vllm.utils import report_hook_error

                report_hook_error("export_child.request", exc)
                if span is not None and span.is_recording():
                    span.end()

    def engine_info(self, key: int, info: tuple) -> None:
        from opentelemetry.instrumentation.vllm.engine_convert import EngineInfo

        model, buckets = info
        self.infos[key] = EngineInfo(model=model, buckets=buckets)

    def engine_steps(self, batch: list, dropped: int) -> None:
        from opentelemetry.instrumentation.vllm.engine_metrics import records_of

        for key, engines, is_step, payload in batch:
            info = self.infos.get(key)
            if info is not None:
                self.engine.apply(info, engines, records_of(is_step, payload))
        if dropped:
            self.engine.add_dropped(dropped)

    def flush(self) -> None:
        self.tp.force_flush()
        self.mp.force_flush()

    def shutdown(self) -> None:
        for fn in (self.tp.force_flush, self.mp.force_flush, self.tp.shutdown, self.mp.shutdown):
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass


def serve(conn: Any, child: Child) -> int:
    """Answer messages until EOF; returns the number of requests written."""
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            break
        try:
            msg = marshal.loads(data)
            kind = msg[0]
            if kind == REQUESTS:
                child.requests(msg[1])
            elif kind == ENGINE:
                child.engine_steps(msg[1], msg[2])
            elif kind == ENGINE_INFO:
                child.engine_info(msg[1], msg[2])
            elif kind == FLUSH:
                child.flush()
                conn.send_bytes(marshal.dumps((FLUSHED, msg[1]), 4))
            else:
                raise ValueError(f"unknown message kind {kind!r}")
        except (OSError, BrokenPipeError):
            break  # the server is gone
        except Exception as exc:  # noqa: BLE001 - a torn or malformed message: count it, keep serving
            from opentelemetry.instrumentation.vllm.utils import report_hook_error

            report_hook_error("export_child.decode", exc)
    child.shutdown()
    return child.written


def main(argv: list[str]) -> int:
    import signal
    from multiprocessing.connection import Connection

    # The server's process group gets SIGINT/SIGTERM on shutdown: keep going until the pipe closes (EOF), so that
    # what the server flushed at exit is exported; EOF also comes when the server is killed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd_in, fd_out = int(argv[1]), int(argv[2])
    server_pid = int(argv[3]) if len(argv) > 3 else os.getppid()
    conn_in, conn_out = Connection(fd_in, writable=False), Connection(fd_out, readable=False)

    class _Duplex:  # recv from the parent's pipe, send on the answer pipe
        recv_bytes = conn_in.recv_bytes
        send_bytes = conn_out.send_bytes

    tp, mp = _configure()
    serve(_Duplex, Child(tp, mp, server_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
