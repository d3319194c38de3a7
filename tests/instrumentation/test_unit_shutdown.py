"""Bounded exit (issue #22 item 5; :mod:`opentelemetry.instrumentation.vllm.shutdown`, ``providers``, the child link),
without vLLM: an exporter that never returns, an OTLP endpoint that accepts and never answers, a SIGSTOPped
telemetry child — each is cut off at the bound, named, counted, and the process is not held; a healthy path loses
nothing. The bounds asserted are generous multiples (a loaded machine); the unbounded behaviour they rule out is
30 s or forever."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import wire_records  # noqa: E402  (tests/instrumentation is on sys.path)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry.instrumentation.vllm import safety, state
from opentelemetry.instrumentation.vllm.handoff import link as handoff_link
from opentelemetry.instrumentation.vllm.providers import shutdown_providers
from opentelemetry.instrumentation.vllm.request.facts import Capture
from opentelemetry.trace import SpanKind
from opentelemetry.instrumentation.vllm.shutdown import bounded_exit

#: Generous ceiling for "returned at the bound, not at the exporter's 30 s timeout" on a loaded machine.
SLACK_S = 10.0


class Stuck(SpanExporter):
    """An exporter whose ``export`` blocks until released (a backend that never answers)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans):
        self.calls += 1
        self.release.wait(120)
        return SpanExportResult.FAILURE

    def shutdown(self):
        pass


@pytest.fixture()
def counted(monkeypatch):
    """Hook errors counted, as ``[(n, hook)]``."""
    out: list[tuple[int, str]] = []
    monkeypatch.setattr(safety, "_error_counter", type("C", (), {"add": staticmethod(
        lambda n, attrs: out.append((n, attrs["hook"])))})())
    return out


@pytest.fixture(autouse=True)
def _no_exit_deadline():
    yield
    state.begin_exit(None)


def _provider_with(exporter) -> TracerProvider:
    tp = TracerProvider(shutdown_on_exit=True)
    tp.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    return tp


def test_a_stuck_exporter_is_abandoned_at_the_bound():
    stuck = Stuck()
    tp = _provider_with(stuck)
    tp.get_tracer("t").start_span("s").end()
    t0 = time.monotonic()
    assert shutdown_providers(1.0, [tp]) == ["TracerProvider"]
    assert time.monotonic() - t0 < 1.0 + SLACK_S
    assert stuck.calls == 1  # the final export was attempted
    stuck.release.set()


def test_a_process_whose_exporter_never_returns_exits_at_the_bound():
    """The abandoned export thread does not hold the interpreter's exit, and the SDK's own (unbounded) exit handler
    does not run it again."""
    script = textwrap.dedent("""
        import threading, time
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
        from opentelemetry.instrumentation.vllm.providers import shutdown_providers

        class Stuck(SpanExporter):
            def export(self, spans):
                print("export", flush=True)
                threading.Event().wait(300)
                return SpanExportResult.FAILURE
            def shutdown(self, timeout_millis=30_000):
                threading.Event().wait(300)  # an exporter whose shutdown hangs too

        tp = TracerProvider(shutdown_on_exit=True)
        tp.add_span_processor(BatchSpanProcessor(Stuck(), schedule_delay_millis=60_000))
        tp.get_tracer("t").start_span("s").end()
        print(shutdown_providers(1.0, [tp]), flush=True)
    """)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["export", "['TracerProvider']"]
    assert time.monotonic() - t0 < 1.0 + 2 * SLACK_S  # interpreter start included; unbounded: 300 s


def test_healthy_providers_shut_down_with_everything_exported():
    memory = InMemorySpanExporter()
    tp = _provider_with(memory)
    for i in range(5):
        tp.get_tracer("t").start_span(f"s{i}").end()
    assert shutdown_providers(30.0, [tp]) == []
    assert sorted(s.name for s in memory.get_finished_spans()) == [f"s{i}" for i in range(5)]


def test_bounded_exit_names_and_counts_what_it_cut_off(counted):
    stuck = Stuck()
    tp = _provider_with(stuck)
    tp.get_tracer("t").start_span("s").end()
    holder = handoff_link.LinkHolder()  # disabled: no child
    t0 = time.monotonic()
    assert bounded_exit(1.0, holder, [tp]) == ["TracerProvider"]
    assert time.monotonic() - t0 < 1.0 + SLACK_S
    assert counted == [(1, "shutdown")]
    stuck.release.set()


@pytest.fixture()
def quiet_child_env(monkeypatch):
    for k, v in {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}.items():
        monkeypatch.setenv(k, v)


def _records(n: int) -> tuple:
    return wire_records(n)


def test_a_stopped_child_is_killed_at_the_bound_and_a_blocked_sender_released(quiet_child_env, counted):
    holder = handoff_link.LinkHolder()
    holder.enabled = True
    link = holder.get()
    assert link.flush(60.0)  # the child is up and serving
    link.send(_records(3), 3)  # sent, never confirmed: lost when the child is killed
    os.kill(link.proc.pid, signal.SIGSTOP)
    sender_done = threading.Event()
    outcome = []

    def sender() -> None:  # a message larger than the pipe buffer: blocks while the child is stopped
        try:
            link.send(_records(20_000), 20_000)
            outcome.append("sent")
        except handoff_link.ExportLost:
            outcome.append("lost")  # the caller writes these in-process: not lost
        sender_done.set()

    threading.Thread(target=sender, daemon=True).start()
    deadline = time.monotonic() + 60
    while not link._lock.locked() and time.monotonic() < deadline:  # the sender holds the pipe
        time.sleep(0.01)
    t0 = time.monotonic()
    assert holder.close(2.0) == 3
    assert time.monotonic() - t0 < 2.0 + SLACK_S
    assert link.proc.returncode == -signal.SIGKILL
    assert sender_done.wait(60) and outcome == ["lost"]
    assert counted == [(3, "export_process")]


def test_the_child_bounds_its_own_shutdown_against_an_endpoint_that_never_answers(monkeypatch):
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)  # the kernel accepts connections; nobody ever reads or answers
    try:
        for k, v in {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_INSECURE": "true",
                     "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{blackhole.getsockname()[1]}",
                     "OTEL_EXPORTER_OTLP_TIMEOUT": "60", "OTEL_BSP_SCHEDULE_DELAY": "60000"}.items():
            monkeypatch.setenv(k, v)
        holder = handoff_link.LinkHolder()
        holder.enabled = True
        link = holder.get()
        capture = Capture(None, "r", None, None, None, None, True, None, None, None, SpanKind.SERVER, 1.0)
        link.send(wire_records(1, capture=capture), 1)  # a span to export
        t0 = time.monotonic()
        holder.close(4.0)  # its flush cannot finish (60 s export timeout); the child gets what is left as its bound
        assert time.monotonic() - t0 < 4.0 + SLACK_S
        assert link.proc.returncode is not None  # gone: exited by itself within its bound, or killed at ours
    finally:
        blackhole.close()
