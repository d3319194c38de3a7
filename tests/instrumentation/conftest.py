"""Fixtures for the instrumentation tests: SDK providers with in-memory exporters, one instrumented offline engine
per session (one engine start), helpers to re-instrument with other settings and to read metric points."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

#: Every attribute the instrumentor patches: (module, owner class, attribute).
PATCHED = [
    ("vllm.v1.engine.output_processor", "OutputProcessor", "add_request"),
    ("vllm.v1.engine.output_processor", "OutputProcessor", "_update_stats_from_finished"),
    ("vllm.v1.engine.output_processor", "OutputProcessor", "_update_streaming_request_state"),
    ("vllm.v1.engine.output_processor", "OutputProcessor", "abort_requests"),
    ("vllm.v1.engine.output_processor", "OutputProcessor", "propagate_error"),
    ("vllm.v1.engine.async_llm", "AsyncLLM", "__init__"),
    ("vllm.v1.engine.async_llm", "AsyncLLM", "generate"),
    ("vllm.v1.engine.llm_engine", "LLMEngine", "__init__"),
    ("vllm.entrypoints.openai.chat_completion.serving", "OpenAIServingChat", "create_chat_completion"),
    ("vllm.entrypoints.openai.completion.serving", "OpenAIServingCompletion", "create_completion"),
    ("vllm.entrypoints.llm", "LLM", "chat"),
    # the offline run loop, where this vLLM has it (compat.py: vllm.entrypoints.offline_utils before 0.32)
    (("vllm.entrypoints.common.offline", "vllm.entrypoints.offline_utils"), "OfflineInferenceMixin", "_run_engine"),
    ("opentelemetry.sdk.trace", "TracerProvider", "force_flush"),
    ("opentelemetry.sdk.trace", "TracerProvider", "shutdown"),
    ("opentelemetry.sdk.metrics", "MeterProvider", "force_flush"),
    ("opentelemetry.sdk.metrics", "MeterProvider", "shutdown"),
    ("vllm.v1.engine.core_client", "EngineCoreClient", "make_async_mp_client"),
    ("vllm.model_executor.model_loader.base_loader", "BaseModelLoader", "load_model"),
    ("vllm.model_executor.model_loader.default_loader", "DefaultModelLoader", "load_weights"),
    ("vllm.model_executor.model_loader.default_loader", "DefaultModelLoader", "_prepare_weights"),
    ("vllm.v1.engine.core", "EngineCore", "_initialize_kv_caches"),
    ("vllm.v1.executor.abstract", "Executor", "compile_or_warm_up_model"),
    ("vllm.v1.worker.gpu_model_runner", "GPUModelRunner", "capture_model"),
    ("vllm.v1.worker.cpu_model_runner", "CPUModelRunner", "warming_up_model"),
]


def current_attributes() -> dict[tuple[str, str], Any]:
    """The raw class-dict entries of every patched attribute (imports the modules)."""
    import importlib

    out = {}
    for module, owner, attr in PATCHED:
        for name in (module,) if isinstance(module, str) else module:
            try:
                mod = importlib.import_module(name)
            except ModuleNotFoundError:
                continue
            out[(owner, attr)] = getattr(mod, owner).__dict__[attr]
            break
    return out


def new_sdk() -> SimpleNamespace:
    """Fresh SDK providers writing to memory: ``tp``/``mp`` (tracer/meter provider), ``exporter`` (finished spans),
    ``reader`` (metric points), ``tracer``/``meter`` of scope "test". The one way tests make SDK providers (a plain
    function too, for property tests that need fresh providers per example)."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    mp = MeterProvider(metric_readers=[reader])
    return SimpleNamespace(tp=tp, mp=mp, exporter=exporter, reader=reader, tracer=tp.get_tracer("test"),
                           meter=mp.get_meter("test"))


@pytest.fixture()
def sdk() -> SimpleNamespace:
    """:func:`new_sdk` for one test."""
    return new_sdk()


def points_of(reader: InMemoryMetricReader) -> dict[tuple, Any]:
    """Every metric point of ``reader`` as ``{(name, frozenset(attributes)): value}``; histograms as
    ``(count, sum, bucket counts)``."""
    out: dict[tuple, Any] = {}
    data = reader.get_metrics_data()
    for rm in (data.resource_metrics if data is not None else ()):
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    key = (m.name, frozenset(p.attributes.items()))
                    out[key] = (p.count, p.sum, tuple(p.bucket_counts)) if hasattr(p, "bucket_counts") else p.value
    return out


@pytest.fixture(scope="session")
def otel() -> Iterator[SimpleNamespace]:
    from opentelemetry.instrumentation.vllm import VLLMInstrumentor

    originals = current_attributes()
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    inst = VLLMInstrumentor()
    inst.instrument(tracer_provider=tp, meter_provider=mp)
    ns = SimpleNamespace(exporter=exporter, reader=reader, tp=tp, mp=mp, inst=inst, originals=originals)
    yield ns
    inst.uninstrument()


@contextmanager
def reinstrumented(otel: SimpleNamespace, **kwargs: Any) -> Iterator[None]:
    """Re-run ``instrument()`` with other settings for the duration of the block, then back to the defaults."""
    otel.inst.uninstrument()
    otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp, **kwargs)
    try:
        yield
    finally:
        otel.inst.uninstrument()
        otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """All data points of metric ``name`` (cumulative), [] when none (after the request writer has caught up)."""
    _flush()
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
            for p in m.data.data_points]


def metric_sum(reader: InMemoryMetricReader, name: str, **attrs: Any) -> float:
    """Sum of counter values (or histogram counts) of ``name`` whose attributes include ``attrs``."""
    total = 0.0
    for p in metric_points(reader, name):
        if all(p.attributes.get(k) == v for k, v in attrs.items()):
            total += p.value if hasattr(p, "value") else p.count
    return total


def _flush() -> None:
    from opentelemetry.instrumentation.vllm import state

    tracker = state.tracker()
    if tracker is not None:
        assert tracker.flush()


@pytest.fixture(scope="session")
def offline_llm(otel: SimpleNamespace, tiny_model_dir) -> Iterator[Any]:
    """One instrumented offline ``vllm.LLM`` (tiny model, float32, eager) for the whole session."""
    import vllm

    llm = vllm.LLM(model=str(tiny_model_dir), dtype="float32", max_model_len=256, enforce_eager=True,
                   enable_prefix_caching=True, seed=0)
    yield llm
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001
        pass
    del llm
    gc.collect()


@pytest.fixture()
def spans(otel: SimpleNamespace) -> SimpleNamespace:
    """Clears the span exporter; ``spans.server()`` / ``spans.all()`` read what the test produced."""
    from opentelemetry.trace import SpanKind

    _flush()
    otel.exporter.clear()

    def finished():
        _flush()
        return list(otel.exporter.get_finished_spans())

    return SimpleNamespace(all=finished, server=lambda: [s for s in finished() if s.kind == SpanKind.SERVER])


def fake_entry(*, prompt: int = 3, generated: int = 4, capture: Any = None, reasons: tuple = ("stop",),
               arrival: float = 1.0, model: str = "m") -> SimpleNamespace:
    """A finished tracker entry over fake vLLM objects (vLLM's field names): one state, stats of a request that
    queued at t=100, was scheduled at 100.25, got its first token at 100.75 and its last at 102.25 (monotonic)."""
    stats = SimpleNamespace(first_token_latency=0.5, queued_ts=100.0, scheduled_ts=100.25, first_token_ts=100.75,
                            last_token_ts=102.25, num_generation_tokens=generated, num_preemptions=0)
    state = SimpleNamespace(request_id="r", external_req_id="r", parent_req=None, prompt_len=prompt,
                            num_cached_tokens=0, stats=stats, detokenizer=None, is_prefilling=False, queue=object(),
                            spec_decode_metrics=None)
    return SimpleNamespace(states=[state], reasons=list(reasons), arrival=arrival, operation="chat", model=model,
                           prefill_stats=None, capture=capture)


def wire_records(n: int = 1, **kw: Any) -> tuple:
    """A ``REQUESTS`` message of ``n`` finished requests, built by the product's own ``wire.request_record``."""
    from opentelemetry.instrumentation.vllm.handoff import wire

    record = wire.request_record(fake_entry(**kw), 2.0, "stop", None)
    return (wire.REQUESTS, [record] * n)

