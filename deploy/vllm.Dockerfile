# Official vLLM GPU image + the light instrumentation distribution only (opentelemetry-instrumentation-vllm:
# VLLMInstrumentor, entry point `vllm`; nothing of the collector) + the OpenTelemetry SDK/exporter.
# `opentelemetry-instrument` configures the SDK from OTEL_* variables (opentelemetry-distro) and loads the instrumentor.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.11.0
FROM ${VLLM_IMAGE}
COPY instrumentation /opt/vllm-otel/instrumentation
RUN pip install --no-cache-dir "/opt/vllm-otel/instrumentation[gpu]" opentelemetry-distro opentelemetry-exporter-otlp
ENTRYPOINT ["opentelemetry-instrument", "vllm", "serve"]
