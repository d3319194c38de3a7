"""The telemetry child process: builds request spans and all metrics with the OpenTelemetry SDK, off the vLLM API
server (the pipe: :mod:`.link`; the messages: :mod:`.wire`).

Started as ``python -m opentelemetry.instrumentation.vllm.handoff.child FD_IN FD_OUT SERVER_PID`` (a plain
interpreter: no vLLM import, no auto-instrumentation). The SDK is configured from the same ``OTEL_*`` environment as
``opentelemetry-instrument`` (the distro's defaults and configurator: exporter, endpoint, headers, resource, sampler).
Finished requests are written by the same function as in the server (:func:`..request.emit.emit`), the span started
under the request's parent (the SDK sampler honours its sampled flag); engine items are expanded
(:func:`..engine.facts.step_records`) and applied to this process's :class:`..engine.aggregator.EngineAggregator`.
EOF (the server exited or was killed): shut the providers down within the shutdown bound, exit. The child never
outlives the server.

The server's process metrics (``process.cpu.utilization``, ``process.memory.usage`` of ``SERVER_PID``) and NVML GPU
gauges are observed here too, so the server's own metric reader has (almost) nothing to collect.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from opentelemetry.instrumentation.vllm.handoff import wire
from opentelemetry.instrumentation.vllm.safety import report_hook_error


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


class Child:
    """What the child holds: tracer, the request instruments, an engine aggregator, engine infos by key."""

    def __init__(self, tp: Any, mp: Any, server_pid: int) -> None:
        from opentelemetry.instrumentation.vllm import safety
        from opentelemetry.instrumentation.vllm.engine.aggregator import EngineAggregator
        from opentelemetry.instrumentation.vllm.host_metrics import register_host_observers
        from opentelemetry.instrumentation.vllm.request.instruments import RequestInstruments
        from opentelemetry.instrumentation.vllm.settings import Settings

        scope = "opentelemetry.instrumentation.vllm"
        self.tp, self.mp = tp, mp
        self.tracer = tp.get_tracer(scope)
        meter = mp.get_meter(scope)
        self.inst = RequestInstruments(meter)
        safety.set_error_counter(self.inst.hook_errors)
        self.engine = EngineAggregator(start_thread=False)
        self.engine.bind(meter)
        register_host_observers(meter, server_pid, exclude=frozenset({os.getpid()}))
        from opentelemetry.instrumentation.vllm.engine.source import SOURCE

        SOURCE.in_child = True
        SOURCE.bridge.install(mp)  # the server's registry snapshots, at each collection of ours
        self.settings = Settings.from_env()
        self.infos: dict[int, Any] = {}
        self.written = 0
        self.abandoned = False  # a provider still exporting at the end: exit without waiting for it

    def requests(self, batch: list) -> None:
        from opentelemetry.instrumentation.vllm.request.emit import emit

        for record in batch:
            try:
                parent, plan, summary = wire.read_request(record)
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the child
                report_hook_error("export_child.request", exc)
                continue
            if emit(self.tracer, self.settings, self.inst, plan, parent, summary, hook="export_child.request"):
                self.written += 1

    def engine_info(self, key: int, info: tuple) -> None:
        from opentelemetry.instrumentation.vllm.engine.table import EngineInfo

        model, buckets = info
        self.infos[key] = EngineInfo(model=model, buckets=buckets)

    def engine_steps(self, batch: list, dropped: int) -> None:
        from opentelemetry.instrumentation.vllm.engine.aggregator import records_of

        for key, engines, is_step, payload in batch:
            info = self.infos.get(key)
            if info is not None:
                self.engine.apply(info, engines, records_of(is_step, payload))
        if dropped:
            self.engine.add_dropped(dropped)

    def flush(self) -> None:
        self.tp.force_flush()
        self.mp.force_flush()

    def shutdown(self, timeout_s: float) -> list[str]:
        """Force-flush and shut both providers down within ``timeout_s`` seconds (:func:`..providers.shutdown_providers`);
        returns the providers that had not finished."""
        from opentelemetry.instrumentation.vllm.providers import shutdown_providers

        return shutdown_providers(timeout_s, (self.tp, self.mp))


def serve(conn: Any, child: Child) -> int:
    """Answer messages until EOF, then shut the providers down within the bound the server sent (``CLOSE``) or
    this process's own; returns the number of requests written."""
    budget = child.settings.shutdown_timeout_s
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            break
        try:
            msg = wire.loads(data)
            kind = msg[0]
            if kind == wire.REQUESTS:
                child.requests(msg[1])
            elif kind == wire.ENGINE:
                child.engine_steps(msg[1], msg[2])
            elif kind == wire.ENGINE_SNAPSHOT:
                from opentelemetry.instrumentation.vllm.engine.source import SOURCE

                SOURCE.receive(msg[1], msg[2], msg[3])
            elif kind == wire.ENGINE_INFO:
                child.engine_info(msg[1], msg[2])
            elif kind == wire.FLUSH:
                child.flush()
                conn.send_bytes(wire.dumps((wire.FLUSHED, msg[1])))
            elif kind == wire.CLOSE:
                budget = min(float(msg[1]), budget)
            else:
                raise ValueError(f"unknown message kind {kind!r}")
        except (OSError, BrokenPipeError):
            break  # the server is gone
        except Exception as exc:  # noqa: BLE001 - a torn or malformed message: count it, keep serving
            report_hook_error("export_child.decode", exc)
    unfinished = child.shutdown(budget)
    if unfinished:
        from opentelemetry.instrumentation.vllm.safety import logger

        logger.warning("vllm-otel telemetry child: %s not shut down within %.1f s; unexported telemetry dropped",
                       ", ".join(unfinished), budget)
        child.abandoned = True
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
    child = Child(tp, mp, server_pid)
    serve(_Duplex, child)
    if child.abandoned:  # an exporter thread still blocked on the endpoint: do not let interpreter exit wait for it
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
