"""OpenTelemetry instrumentation for vLLM (placeholder: the instrumentor is being built)."""

from opentelemetry.instrumentation.vllm.instrumentor import VLLMInstrumentor

__all__ = ["VLLMInstrumentor"]
