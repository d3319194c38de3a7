"""End to end through the real collector: OTel SDK spans over OTLP/HTTP → collector with the analytics plug-in →
llm_requests / span_levels / rollups in chDB → read API → CLI (API and direct ClickHouse give the same answer)."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics.api import make_routes
from vllm_otel_inference.cli import main


def send(port: int, n: int) -> list[str]:
    tp = TracerProvider(resource=Resource.create({"service.name": "vllm-e2e"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")))
    tracer = tp.get_tracer("test")
    trace_ids = []
    for i in range(n):
        failed = i % 4 == 3
        with tracer.start_as_current_span("chat m-e2e") as span:
            span.set_attributes({
                sc.OPERATION_NAME: "chat", sc.RESPONSE_MODEL: "m-e2e", sc.LATENCY_TTFT: 0.05 * (i + 1),
                sc.LATENCY_E2E: 0.5 + 0.1 * i, sc.LATENCY_QUEUE: 0.01, sc.LATENCY_PREFILL: 0.04,
                sc.LATENCY_DECODE: 0.4, sc.USAGE_INPUT_TOKENS: 10, sc.USAGE_OUTPUT_TOKENS: 5,
                sc.VLLM_FINISH_REASON: "error" if failed else "stop", sc.VLLM_REQUEST_ID: f"chatcmpl-{i}",
                sc.VLLM_ARRIVAL_RUNNING: i, sc.VLLM_ARRIVAL_WAITING: 2 * i, sc.VLLM_ARRIVAL_KV_CACHE_USAGE: 0.25})
            if failed:
                span.set_status(Status(StatusCode.ERROR, "engine died"))
            trace_ids.append(f"{span.get_span_context().trace_id:032x}")
        with tracer.start_as_current_span("tts_synthesis"):
            pass
    tp.shutdown()
    return trace_ids


def test_spans_to_cli(collector, capsys, tmp_path):
    trace_ids = send(collector.http_port, 8)
    store = collector.store
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if store.query("SELECT count() FROM llm_requests").result_rows[0][0] == 8:
            break
        time.sleep(0.2)
    rows = store.query("SELECT TraceId, round(toFloat64(TTFT), 4), Status FROM llm_requests ORDER BY TTFT").result_rows
    assert rows == [(t, round(0.05 * (i + 1), 4), "error" if i % 4 == 3 else "ok") for i, t in enumerate(trace_ids)]
    assert store.query("SELECT count(), any(Level) FROM span_levels").result_rows == [(8, "EXCELLENT")]
    assert store.query("SELECT sum(Requests), sum(Errors) FROM llm_requests_1m").result_rows == [(8, 2)]

    api = f"http://127.0.0.1:{collector.api_port}"
    assert main(["stats", "--api", api, "--json", "--window", "3600"]) == 0
    via_api = json.loads(capsys.readouterr().out)
    (g,) = via_api["groups"]
    assert (g["service"], g["model"], g["requests"], g["error_rate"]) == ("vllm-e2e", "m-e2e", 8, 0.25)
    assert g["latency"]["ttft"]["max"] == pytest.approx(0.4)
    # --clickhouse runs the same handler on a Store; in-process we call it on the collector's own Store (a second
    # Store on the same chDB path in one process is the collector's concern; the CLI runs in its own process).
    status, via_dsn = make_routes()["/api/v1/stats"](store, {"since": str(via_api["since"]),
                                                              "until": str(via_api["until"])})
    assert status == 200 and json.loads(json.dumps(via_dsn["groups"])) == via_api["groups"]

    assert main(["stats", "--api", api, "--window", "3600"]) == 0
    table = capsys.readouterr().out
    assert "m-e2e" in table and "75.0%" in table  # success rate in the rich table
    # goodput: the 6 ok requests met the default SLOs (TTFT <= 2 s, TPOT 0.1 s): 6 of 8; causes: 2 errors, 6 ok
    assert "75.0% (" in table and "why slow: requests per cause" in table
    assert via_api["groups"][0]["goodput"]["good"] == 6 and via_api["groups"][0]["causes"]["error"] == 2

    assert main(["export", "--api", api, "--format", "csv", "--status", "error"]) == 0
    exported = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r["TraceId"] for r in exported) == sorted([trace_ids[3], trace_ids[7]])
    out = tmp_path / "r.parquet"
    assert main(["export", "--api", api, "--format", "parquet", "-o", str(out)]) == 0
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 8
    assert main(["alerts", "--api", api, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"state": "firing", "alerts": []}

    # explain: by trace id and by request id the same answer; TTFT 0.4 s, E2E 1.2 s, TPOT 0.1 s: within the SLOs
    assert main(["explain", trace_ids[7], "--api", api, "--json"]) == 0
    by_trace = json.loads(capsys.readouterr().out)
    assert main(["explain", "chatcmpl-7", "--api", api, "--json", "--jaeger-url", "http://jaeger:16686/"]) == 0
    by_id = json.loads(capsys.readouterr().out)
    assert by_trace["jaeger_url"] == f"http://localhost:16686/trace/{trace_ids[7]}"
    assert by_id["jaeger_url"] == f"http://jaeger:16686/trace/{trace_ids[7]}"
    assert {k: v for k, v in by_trace.items() if k != "jaeger_url"} == {k: v for k, v in by_id.items()
                                                                       if k != "jaeger_url"}
    assert (by_id["cause"], by_id["status"], by_id["request_id"]) == ("error", "error", "chatcmpl-7")
    assert by_id["arrival"] == {"running": 7, "waiting": 14, "kv_cache_usage": 0.25}
    assert [t["phase"] for t in by_id["timeline"]] == ["queue", "prefill", "decode"]
    assert by_id["timeline"][2]["start"] == pytest.approx(0.05)
    assert main(["explain", "chatcmpl-6", "--api", api]) == 0
    text = capsys.readouterr().out
    assert "ok — ok: met its SLOs" in text and "7 waiting" not in text and "6 running, 12 waiting" in text
    assert f"http://localhost:16686/trace/{trace_ids[6]}" in text
    assert main(["explain", "no-such-request", "--api", api]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no request or engine start with id 'no-such-request'" in err
    assert main(["explain", "x" * 300, "--api", api]) == 2


def test_cli_user_errors(capsys):
    assert main(["stats", "--api", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the collector read API at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["export", "--format", "parquet", "--api", "http://127.0.0.1:9"]) == 2
    assert "give --output FILE" in capsys.readouterr().err


POPULATE = """
import sys
from vllm_otel_collector.analytics import plugins
from vllm_otel_collector.store import Store, migrate
sys.path.insert(0, sys.argv[2])
from synth import request, store_spans
s = Store("chdb://" + sys.argv[1], database="cli")
migrate(s)
for step in plugins(None)["setup"]:
    step(s)
store_spans(s, [request(i, 1_800_000_000 + i, ttft=0.1 * i, lora="a" if i % 2 else None) for i in range(1, 11)])
"""


@pytest.mark.chdb
def test_cli_direct_clickhouse_in_own_process(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "ch"
    py = sys.executable
    subprocess.run([py, "-c", POPULATE, str(path), str(Path(__file__).parent)], check=True, timeout=120)
    dsn = ["--clickhouse", f"chdb://{path}", "--database", "cli"]
    out = subprocess.run([py, "-m", "vllm_otel_inference.cli", "stats", *dsn, "--json", "--since", "1800000000",
                          "--until", "1800000100"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (g,) = json.loads(out.stdout)["groups"]
    assert (g["requests"], g["latency"]["ttft"]["p95"]) == (10, pytest.approx(0.955, rel=1e-6))
    out = subprocess.run([py, "-m", "vllm_otel_inference.cli", "stats", *dsn, "--mode", "aggregated", "--since",
                          "1800000000", "--until", "1800000100"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage by model and LoRA" in out.stdout, out.stderr
    out = subprocess.run([py, "-m", "vllm_otel_inference.cli", "export", *dsn, "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 10, out.stderr
