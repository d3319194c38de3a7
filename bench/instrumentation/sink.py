"""The benchmarks' null OTLP/gRPC receiver: the tests' :class:`tests.instrumentation.otlp_sink.OtlpSink` with
``keep=False`` — it accepts traces and metrics, counts spans and data points and stores nothing, so the variants pay
only for producing and exporting their telemetry, not for a collector.

``with OtlpSink() as sink: sink.endpoint`` → ``"http://127.0.0.1:<port>"``; ``sink.snapshot()`` → running totals.
"""

from __future__ import annotations

from functools import partial

from tests.instrumentation.otlp_sink import OtlpSink as _Sink

#: ``OtlpSink(port=0)``: counting only, two server threads.
OtlpSink = partial(_Sink, keep=False, workers=2)
