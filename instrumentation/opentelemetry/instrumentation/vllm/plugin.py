"""``vllm.general_plugins`` entry point: vLLM calls :func:`register` in every process it starts (API server,
EngineCore, workers). It instruments that process when an SDK tracer provider is configured there — e.g. the user's
own setup code, or vLLM's ``--otlp-traces-endpoint`` — and does nothing otherwise. Never patches twice."""

from __future__ import annotations

from opentelemetry import trace


def register() -> None:
    """Instrument this process if an SDK ``TracerProvider`` is installed and we are not instrumented yet."""
    try:
        from opentelemetry.sdk.trace import TracerProvider

        from opentelemetry.instrumentation.vllm import VLLMInstrumentor

        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            return
        instrumentor = VLLMInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    except Exception as exc:  # noqa: BLE001 - a plugin must never stop vLLM
        from opentelemetry.instrumentation.vllm.safety import report_hook_error

        report_hook_error("plugin.register", exc)
