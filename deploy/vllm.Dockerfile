# Official vLLM GPU image + this package (VLLMInstrumentor, entry point `vllm`) + the OpenTelemetry SDK/exporter.
# `opentelemetry-instrument` configures the SDK from OTEL_* variables (opentelemetry-distro) and loads the instrumentor.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.11.0
FROM ${VLLM_IMAGE}
COPY pyproject.toml README.md /opt/vllm-otel/
COPY instrumentation /opt/vllm-otel/instrumentation
COPY collector_processor /opt/vllm-otel/collector_processor
COPY inference /opt/vllm-otel/inference
RUN pip install --no-cache-dir /opt/vllm-otel opentelemetry-distro opentelemetry-exporter-otlp
ENTRYPOINT ["opentelemetry-instrument", "vllm", "serve"]
