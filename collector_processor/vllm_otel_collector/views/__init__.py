"""What people look at: Grafana dashboard as code, the self-contained HTML report, and ``vllm-otel top``."""
