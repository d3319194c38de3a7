"""Engine start as it happens: model-load spans sent stage by stage with the OpenTelemetry SDK over OTLP/HTTP to the
real collector, folded from chDB (analytics/startup.py), served at /api/v1/startup and drawn by the rich progress
display (views/startup.py) that ``vllm-otel demo`` and ``vllm-otel top`` show."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from rich.console import Console

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics.startup import PHASES, engine_starts, fold_start
from vllm_otel_collector.views.startup import render_start, size
from vllm_otel_collector.views.top import run_top

from .data import MODEL, wait_for


class Sender:
    """One engine-start trace: spans exported one by one as they end (SimpleSpanProcessor → OTLP/HTTP)."""

    def __init__(self, http_port: int, base: float):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        self.tp = TracerProvider(resource=Resource.create({"service.name": "vllm"}))
        self.tp.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")))
        self.tracer = self.tp.get_tracer("tests.views.startup")
        self.base = base
        self.root = self.tracer.start_span(sc.NATIVE_SPAN_MODEL_LOAD_ROOT, start_time=self._ns(0))
        self.trace_id = f"{self.root.get_span_context().trace_id:032x}"
        self.sent = 0

    def _ns(self, t: float) -> int:
        return int((self.base + t) * 1e9)

    def span(self, name: str, t0: float, t1: float, attrs: dict | None = None) -> None:
        from opentelemetry.trace import set_span_in_context

        s = self.tracer.start_span(name, context=set_span_in_context(self.root), start_time=self._ns(t0),
                                   attributes=attrs or {})
        s.end(end_time=self._ns(t1))
        self.sent += 1

    def ready(self, t1: float, attrs: dict) -> None:
        self.root.set_attributes(attrs)
        self.root.end(end_time=self._ns(t1))
        self.sent += 1

    def stored(self, store) -> None:
        wait_for(store, f"SELECT count() FROM otel_traces WHERE TraceId = '{self.trace_id}'", self.sent)


def _text(table, width: int = 120) -> str:
    console = Console(record=True, width=width, force_terminal=False)
    console.print(table)
    return console.export_text()


def _row(text: str, phase: str) -> str:
    (line,) = [ln for ln in text.splitlines() if re.match(rf"^\W*{re.escape(phase)}\s", ln.strip("│ ┃"))]
    return re.sub(r"\s+", " ", line.replace("│", " ")).strip()


def test_a_cold_start_phase_by_phase(filled, views_collector):
    store, info = filled
    base = info.start - 3 * 3600.0  # older than every report/dashboard window of the other view tests
    cold = Sender(views_collector.http_port, base)
    cold.span("Load weights", 3, 7, {sc.LOAD_WEIGHTS_SECONDS: 4.0, sc.LOAD_WEIGHTS_BYTES: 269_060_000})
    cold.span("Load model", 2, 8, {sc.LOAD_MODEL_NAME: MODEL, sc.LOAD_MODEL_PATH: f"/models/{MODEL}"})
    cold.stored(store)

    (start,) = engine_starts(store, since=base - 1)
    assert start["trace_id"] == cold.trace_id and start["model"] == MODEL and not start["ready"]
    assert [(p["phase"], p["state"]) for p in start["phases"]] == [
        ("weights", "done"), ("kv_cache", "running"), ("compile", "pending"), ("warmup", "pending"),
        ("ready", "pending")]
    assert start["phases"][0] == {"phase": "weights", "state": "done", "seconds": 4.0, "bytes": 269_060_000}
    assert start["started"] == pytest.approx(base + 2) and start["updated"] == pytest.approx(base + 8)
    text = _text(render_start(start, now=base + 10))
    assert f"engine start — {MODEL} loading, 8 s" in text  # since the first stored span began
    assert _row(text, "weights") == "weights ✓ done 4.0 269 MB loaded"
    assert _row(text, "KV cache") == "KV cache ⠿ running 2…"
    assert _row(text, "compile") == "compile · pending" and _row(text, "ready") == "ready · pending"
    assert f"vllm · trace {cold.trace_id}" in text

    cold.span("Allocate KV cache", 9, 10.5)
    cold.span("Warmup (CPU)", 11, 26, {sc.LOAD_COMPILE_SECONDS: 12.0, sc.LOAD_COMPILE_CACHE_HIT: False})
    cold.span("Prepare model", 8.5, 27, {sc.LOAD_KV_BLOCKS: 4096, sc.LOAD_KV_BYTES: 1_073_741_824,
                                         sc.LOAD_WARMUP_SECONDS: 15.5})
    cold.stored(store)
    (start,) = engine_starts(store, since=base - 1)
    text = _text(render_start(start, now=base + 28))
    assert _row(text, "KV cache") == "KV cache ✓ done 1.5 4096 blocks, 1.07 GB"
    assert _row(text, "compile") == "compile ✓ done 12.0 compile cache miss (cold compile)"
    assert _row(text, "warm-up") == "warm-up ✓ done 15.0"  # the worker's span, not the EngineCore's figure
    assert _row(text, "ready") == "ready ⠿ running 1…" and start["compile_cache_hit"] is False

    cold.ready(30, {sc.LOAD_TOTAL_SECONDS: 29.5, sc.LOAD_COLD_START_SECONDS: 34.25})
    cold.stored(store)
    (start,) = engine_starts(store, since=base - 1)
    assert start["ready"] and start["load_seconds"] == 29.5 and start["cold_start_seconds"] == 34.25
    assert [p["state"] for p in start["phases"]] == ["done"] * len(PHASES)
    text = _text(render_start(start, now=base + 99))
    assert f"engine start — {MODEL} ready in 29.5 s" in text
    assert _row(text, "ready") == "ready ✓ done 29.5 cold start (process start → ready) 34.2 s"

    # a warm start of the same model (compile cache hit), sent at once; newest first
    warm = Sender(views_collector.http_port, base + 600)
    warm.span("Load weights", 1, 2.5, {sc.LOAD_WEIGHTS_SECONDS: 1.5, sc.LOAD_WEIGHTS_BYTES: 269_060_000})
    warm.span("Load model", 0.5, 3, {sc.LOAD_MODEL_NAME: MODEL})
    warm.span("Warmup (CPU)", 4, 6, {sc.LOAD_COMPILE_SECONDS: 0.8, sc.LOAD_COMPILE_CACHE_HIT: True})
    warm.ready(7, {sc.LOAD_TOTAL_SECONDS: 6.9})
    warm.stored(store)
    starts = engine_starts(store, since=base - 1)
    assert [(s["trace_id"], s["compile_cache_hit"], s["load_seconds"]) for s in starts] == [
        (warm.trace_id, True, 6.9), (cold.trace_id, False, 29.5)]
    text = _text(render_start(starts[0], now=base + 700))
    assert _row(text, "compile") == "compile ✓ done 0.8 compile cache hit"
    assert _row(text, "KV cache") == "KV cache – no span – not measured"  # ready, no span reported the KV cache
    # the read API serves the same
    api = f"http://127.0.0.1:{views_collector.api_port}/api/v1/startup"
    body = httpx.get(api, params={"since": base - 1}, timeout=30).json()
    assert body == {"starts": starts}
    bad = httpx.get(api, params={"window": "soon"}, timeout=30)
    assert bad.status_code == 400 and "parameter window must be a number" in bad.json()["error"]
    warm.tp.shutdown()
    cold.tp.shutdown()


def test_top_shows_a_start_in_progress(filled, views_collector):
    store, _ = filled
    now = time.time()
    live = Sender(views_collector.http_port, now - 20)
    live.span("Load weights", 1, 9, {sc.LOAD_WEIGHTS_BYTES: 5_000_000})
    live.span("Load model", 0, 10, {sc.LOAD_MODEL_NAME: "tiny-live"})
    live.stored(store)
    console = Console(record=True, width=160, force_terminal=False)
    assert run_top(f"http://127.0.0.1:{views_collector.api_port}", window=600, once=True, console=console) == 0
    text = console.export_text()
    assert re.search(r"engine start — tiny-live loading, 2\d s", text)
    assert _row(text, "weights") == "weights ✓ done 8.0 5 MB loaded"
    assert _row(text, "KV cache").startswith("KV cache ⠿ running 1")
    assert "vLLM serving — last 600 s" in text  # the usual frame follows
    live.tp.shutdown()


def test_before_the_first_span_and_sizes():
    text = _text(render_start(None, now=0.0, waited=12.4))
    assert "waiting for the first model-load span" in text and "waiting 12 s" in text
    assert _row(text, "weights") == "weights ⠿ running" and _row(text, "ready") == "ready · pending"
    assert [size(n) for n in (None, 0, 999, 1_000, 269_060_000, 1_073_741_824)] == ["", "0 B", "999 B", "1 kB",
                                                                                   "269 MB", "1.07 GB"]


def test_fold_eager_start_and_model_from_path():
    spans = [{"name": "Overall Loading", "start": 100.0, "seconds": 9.0, "service": "svc",
              "attrs": {sc.LOAD_MODEL_PATH: "/m/tiny-llama/"}},
             {"name": "Prepare model", "start": 104.0, "seconds": 3.0, "service": "svc", "attrs": {}}]
    start = fold_start(spans)
    assert start["model"] == "tiny-llama" and start["ready"] and start["load_seconds"] == 9.0
    compile_ = next(p for p in start["phases"] if p["phase"] == "compile")
    assert compile_ == {"phase": "compile", "state": "done", "seconds": None, "cache_hit": None,
                        "cache_fallback_reason": None, "cache_path": None}
    assert "no compilation (eager)" in _text(render_start(start, now=200.0))
    assert [p["state"] for p in start["phases"]] == ["missing", "missing", "done", "done", "done"]


def _start(*spans):
    """Fold spans ``(name, t0, t1, attrs)`` (attribute values as stored: strings) of one trace."""
    return fold_start([{"name": n, "start": 100.0 + t0, "seconds": t1 - t0, "service": "svc", "attrs": a}
                       for n, t0, t1, a in spans])


def test_a_phase_with_nothing_measured_says_so():
    """No warm-up figure at all (GPU-less eager start: "Prepare model" without vllm.warmup.seconds, no warm-up
    span): the warm-up row says "not measured" instead of borrowing another phase's time."""
    start = _start(("Overall Loading", 0, 40, {sc.LOAD_TOTAL_SECONDS: "40.0"}),
                   ("Prepare model", 10, 30, {sc.LOAD_COMPILE_SECONDS: "12.5"}))
    warm = next(p for p in start["phases"] if p["phase"] == "warmup")
    assert warm == {"phase": "warmup", "state": "done", "seconds": None}
    text = _text(render_start(start, now=200.0))
    assert _row(text, "warm-up") == "warm-up ✓ done – not measured"
    assert _row(text, "compile") == "compile ✓ done 12.5 cache hit/miss unknown"
    assert _row(text, "weights") == "weights – no span – not measured"


def test_a_warmup_that_is_the_compile_span_is_not_measured():
    """CPU: torch.compile runs inside "Warmup (CPU)"; without vLLM's compilation time the compile seconds are that
    span's elapsed time, which the fold also takes as the warm-up (the demo showed 112.2 s twice)."""
    start = _start(("Overall Loading", 0, 130, {sc.LOAD_TOTAL_SECONDS: "130.0"}),
                   ("Warmup (CPU)", 11, 123.2, {sc.LOAD_COMPILE_SECONDS: "112.2", sc.LOAD_COMPILE_CACHE_HIT: "false"}))
    assert [p.get("seconds") for p in start["phases"] if p["phase"] in ("compile", "warmup")] == [
        112.2, pytest.approx(112.2)]
    text = _text(render_start(start, now=200.0))
    assert _row(text, "compile") == "compile ✓ done 112.2 compile cache miss (cold compile)"
    assert _row(text, "warm-up") == "warm-up ✓ done – not measured apart from compile (one 112.2 s span)"
    # a warm-up span longer than its compile measured something of its own: shown
    longer = _start(("Overall Loading", 0, 30, {}), ("Warmup (CPU)", 11, 26, {sc.LOAD_COMPILE_SECONDS: "12.0"}))
    assert _row(_text(render_start(longer, now=99.0)), "warm-up") == "warm-up ✓ done 15.0"


def test_a_compile_cache_that_failed_to_load_shows_vllms_reason():
    """vLLM 0.32 on a second start: its AOT artifact failed to load and it compiled again (issue #24)."""
    reason = "'function' object has no attribute 'finalize_loading'"
    start = _start(("Overall Loading", 0, 95, {}),
                   ("Warmup (CPU)", 5, 90, {sc.LOAD_COMPILE_SECONDS: "80.5", sc.LOAD_COMPILE_CACHE_HIT: "false",
                                            sc.LOAD_COMPILE_CACHE_PATH: "/c/torch_compile_cache/x",
                                            sc.LOAD_COMPILE_CACHE_FALLBACK_REASON: reason}))
    compile_ = next(p for p in start["phases"] if p["phase"] == "compile")
    assert (compile_["cache_fallback_reason"], compile_["cache_path"]) == (reason, "/c/torch_compile_cache/x")
    assert _row(_text(render_start(start, now=200.0), width=160), "compile") == (
        f"compile ✓ done 80.5 cache failed to load, compiled again: {reason}")
