# The vllm-otel collector (OTLP gRPC 4317 / HTTP 4318, read API 4319). Build context: the repository root.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY instrumentation ./instrumentation
COPY collector_processor ./collector_processor
COPY inference ./inference
RUN pip install ./instrumentation . && useradd --system --uid 10001 collector && mkdir /data && chown collector /data
USER collector
VOLUME ["/data"]
EXPOSE 4317 4318 4319
ENTRYPOINT ["vllm-otel"]
CMD ["collector", "--listen", "0.0.0.0:4317", "--http-listen", "0.0.0.0:4318", "--api-listen", "0.0.0.0:4319", "--data-dir", "/data"]
