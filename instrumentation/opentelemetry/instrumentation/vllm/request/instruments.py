"""The request-path metric instruments, created once per meter (in the server and in the telemetry child).

Bucket boundaries are the GenAI semantic conventions' advisories
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/): seconds for latencies, tokens for usage.
vLLM's engine metric set is :mod:`..engine`; process/GPU gauges are :mod:`..host_metrics`.
"""

from __future__ import annotations

from opentelemetry.metrics import Meter

from opentelemetry.instrumentation.vllm import semconv as sc

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]


class RequestInstruments:
    """The request-path instruments recorded by :mod:`.emit` (per finished request) and the hook-error counter:
    what both the server (in-process writing) and the telemetry child (:mod:`..handoff.child`) create."""

    def __init__(self, meter: Meter) -> None:
        self.ttft = meter.create_histogram(sc.METRIC_TTFT, unit="s", description="Time to first token",
                                           explicit_bucket_boundaries_advisory=TTFT_BUCKETS)
        self.tpot = meter.create_histogram(sc.METRIC_TPOT, unit="s", description="Time per output token after the first",
                                           explicit_bucket_boundaries_advisory=TPOT_BUCKETS)
        self.duration = meter.create_histogram(sc.METRIC_REQUEST_DURATION, unit="s",
                                               description="Request duration, arrival to last token",
                                               explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self.token_usage = meter.create_histogram(sc.METRIC_TOKEN_USAGE, unit="{token}",
                                                  description="Tokens per client request by gen_ai.token.type",
                                                  explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
        self.requests = meter.create_counter(sc.METRIC_REQUESTS, unit="{request}",
                                             description="Finished requests by vllm.finish_reason")
        self.zombies = meter.create_counter(sc.METRIC_ZOMBIES, unit="{request}",
                                            description="Requests ended by the instrumentation after the timeout")
        self.hook_errors = meter.create_counter(sc.METRIC_HOOK_ERRORS, unit="{error}",
                                                description="Exceptions caught in vllm-otel hooks")
