"""The telemetry child process: builds request spans and metrics with the OpenTelemetry SDK, off the vLLM API server.

Started by :mod:`.export_process` as ``python -m opentelemetry.instrumentation.vllm.export_child FD_IN FD_OUT``
(a plain interpreter: no vLLM import, no auto-instrumentation). The SDK is configured from the same ``OTEL_*``
environment as ``opentelemetry-instrument`` (the distro's defaults and configurator: exporter, endpoint, headers,
resource, sampler). Messages (pickled over a pipe, :class:`multiprocessing.connection.Connection`):

- ``("req", parent, plan, summary)`` — ``parent`` = ``(trace_id, span_id, trace_flags, is_remote, tracestate)`` or
  None; ``plan`` = ``(name, start_ns, attrs, kind)`` or None (vLLM native tracing on: metrics only); ``summary`` a
  :class:`.summary.RequestSummary`. The span is started under ``parent`` (the SDK sampler honours its sampled flag).
- ``("flush", n)`` — force-flush both providers, answer ``("flushed", n)``.
- EOF (the server exited or was killed): flush, shut the providers down, exit. The child never outlives the server.
"""

from __future__ import annotations

import os
import sys
from typing import Any


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


def _request_instruments(meter: Any) -> Any:
    """Only the request-path instruments :func:`.record.record_metrics` uses (same names, units, buckets as
    :class:`.instruments.Instruments`): the engine and process metrics stay in the server, where their data is."""
    from types import SimpleNamespace

    from opentelemetry.instrumentation.vllm import instruments as i
    from opentelemetry.instrumentation.vllm import semconv as sc

    def hist(name: str, unit: str, desc: str, buckets: list) -> Any:
        return meter.create_histogram(name, unit=unit, description=desc, explicit_bucket_boundaries_advisory=buckets)

    return SimpleNamespace(
        ttft=hist(sc.METRIC_TTFT, "s", "Time to first token", i.TTFT_BUCKETS),
        tpot=hist(sc.METRIC_TPOT, "s", "Time per output token after the first", i.TPOT_BUCKETS),
        duration=hist(sc.METRIC_REQUEST_DURATION, "s", "Request duration, arrival to last token", i.DURATION_BUCKETS),
        token_usage=hist(sc.METRIC_TOKEN_USAGE, "{token}", "Tokens per client request by gen_ai.token.type",
                         i.TOKEN_BUCKETS),
        requests=meter.create_counter(sc.METRIC_REQUESTS, unit="{request}",
                                      description="Finished requests by vllm.finish_reason"),
        zombies=meter.create_counter(sc.METRIC_ZOMBIES, unit="{request}",
                                     description="Requests ended by the instrumentation after the timeout"))


def serve(conn: Any, tp: Any, mp: Any) -> int:
    """Answer messages until EOF; returns the number of requests written."""
    from opentelemetry.trace import SpanKind

    from opentelemetry.instrumentation.vllm.record import record_metrics, write_span
    from opentelemetry.instrumentation.vllm.requests import _SpanPlan
    from opentelemetry.instrumentation.vllm.utils import Settings

    scope = "opentelemetry.instrumentation.vllm"
    tracer = tp.get_tracer(scope)
    inst = _request_instruments(mp.get_meter(scope))
    settings = Settings.from_env()
    written = 0
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "flush":
            tp.force_flush()
            mp.force_flush()
            conn.send(("flushed", msg[1]))
            continue
        _, parent, plan, summary = msg
        span = None
        try:
            if plan is not None:
                name, start_ns, attrs, kind = plan
                span = tracer.start_span(name, context=_parent_context(parent), kind=SpanKind(kind),
                                         start_time=start_ns, attributes=attrs)
                write_span(tracer, settings, span, _SpanPlan(name, None, None, start_ns, attrs), summary)
            record_metrics(inst, summary, span)
            written += 1
        except Exception:  # noqa: BLE001 - one bad record must not stop the child
            if span is not None and span.is_recording():
                span.end()
    for fn in (tp.force_flush, mp.force_flush, tp.shutdown, mp.shutdown):
        try:
            fn()
        except Exception:  # noqa: BLE001
            pass
    return written


def main(argv: list[str]) -> int:
    from multiprocessing.connection import Connection

    import signal

    # The server's process group gets SIGINT/SIGTERM on shutdown: keep going until the pipe closes (EOF), so that
    # what the server flushed at exit is exported; EOF also comes when the server is killed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd_in, fd_out = int(argv[1]), int(argv[2])
    conn_in, conn_out = Connection(fd_in, writable=False), Connection(fd_out, readable=False)

    class _Duplex:  # recv from the parent's pipe, send on the answer pipe
        recv = conn_in.recv
        send = conn_out.send

    tp, mp = _configure()
    serve(_Duplex, tp, mp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
