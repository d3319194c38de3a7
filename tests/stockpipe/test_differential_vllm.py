"""The differential test on real telemetry: what our instrumentation sends from a real vLLM (tiny model, CPU) — a
served OpenAI server (streaming chats with a traceparent, a client disconnect, n=2, prefix-cache hits, a model load)
and an offline ``LLM.generate`` run — captured as raw OTLP requests, then stored (a) through our collector and (b)
the way the contrib clickhouseexporter inserts it, Map and JSON mode. Every derived table is identical row by row,
and nothing is lost: one llm_requests row per request span the processes sent."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from opentelemetry.instrumentation.vllm import semconv as sc

from . import contrib_exporter as X
from .dataset import through_our_collector, through_the_exporter
from .test_differential import SNAPSHOTS, assert_same

pytestmark = pytest.mark.vllm
LONG_PROMPT = "Explain the roles of prefill and decode in LLM serving, then list five tips. " * 6


class Capture:
    """An OTLP/gRPC receiver (traces + metrics) that keeps every request body as it arrived."""

    def __init__(self) -> None:
        self.traces: list[bytes] = []
        self.metrics: list[bytes] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        capture = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802
                with capture._lock:
                    capture.traces.append(request.SerializeToString())
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                with capture._lock:
                    capture.metrics.append(request.SerializeToString())
                return metrics_service_pb2.ExportMetricsServiceResponse()

        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        self.endpoint = f"http://127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def spans(self) -> list:
        with self._lock:
            bodies = list(self.traces)
        return [s for b in bodies for rs in ExportTraceServiceRequest.FromString(b).resource_spans
                for ss in rs.scope_spans for s in ss.spans]

    def wait_for(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.spans()):
            assert time.monotonic() < deadline, f"not captured within {timeout_s:.0f} s: {what}"
            time.sleep(0.5)

    def __enter__(self) -> "Capture":
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(grace=2)


def _otel_env(capture: Capture, service: str) -> dict[str, str]:
    return dict(os.environ, OTEL_SERVICE_NAME=service, OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp",
                OTEL_LOGS_EXPORTER="none", OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                OTEL_EXPORTER_OTLP_ENDPOINT=capture.endpoint, OTEL_EXPORTER_OTLP_INSECURE="true",
                OTEL_METRIC_EXPORT_INTERVAL="500", OTEL_BSP_SCHEDULE_DELAY="200", VLLM_CPU_KVCACHE_SPACE="1",
                OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="fastapi")


def _is_request(span) -> bool:
    return any(a.key == sc.VLLM_FINISH_REASON for a in span.attributes)


async def _workload(base: str, model: str) -> int:
    """Streaming chats (with traceparent), a client disconnect, n=2, the same long prompt three times (prefix-cache
    hits), a plain completion. Returns the number of requests the engine saw (n=2 is one request)."""
    async with httpx.AsyncClient(timeout=300) as client:
        async def chat(text: str, max_tokens: int, disconnect: bool = False, n: int = 1):
            body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                    "stream": True, "ignore_eos": True, "n": n, "stream_options": {"include_usage": True}}
            headers = {"traceparent": f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"}
            async with client.stream("POST", f"{base}/v1/chat/completions", json=body, headers=headers) as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    if disconnect and line.startswith("data: {"):
                        break  # closing the stream = client disconnect → abort

        await chat(LONG_PROMPT, 8)
        await asyncio.gather(chat(LONG_PROMPT, 6), chat(LONG_PROMPT, 6), chat("Hello there", 12, n=2),
                             chat("Tell me a long story about caches", 400, disconnect=True),
                             *[chat(f"Question number {i}", 10 + i) for i in range(4)])
        resp = await client.post(f"{base}/v1/completions", json={"model": model, "prompt": "The KV cache",
                                                                  "max_tokens": 7, "ignore_eos": True})
        assert resp.status_code == 200
    return 10


OFFLINE = """
import sys
import vllm
if __name__ == "__main__":
    llm = vllm.LLM(model=sys.argv[1], dtype="float32", max_model_len=1024, enforce_eager=True)
    outs = llm.generate(["Offline one", "Offline two", "Offline three"],
                        vllm.SamplingParams(max_tokens=6, ignore_eos=True))
    print("generated", len(outs), flush=True)
"""


@pytest.fixture(scope="module")
def captured(tiny_model_dir, tmp_path_factory):
    """Raw OTLP bodies from a served run and an offline run of the instrumented tiny model."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "instrumentation"))  # its server helpers
    from served_server import free_port, server_group

    work = tmp_path_factory.mktemp("vllm-diff")
    venv_bin = Path(sys.executable).parent
    with Capture() as capture:
        port = free_port()
        cmd = [str(venv_bin / "opentelemetry-instrument"), sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(tiny_model_dir), "--served-model-name", "tiny", "--dtype", "float32",
               "--max-model-len", "2048", "--enforce-eager", "--enable-prefix-caching", "--host", "127.0.0.1",
               "--port", str(port), "--max-num-seqs", "32"]
        with server_group(cmd, _otel_env(capture, "vllm-served"), port, work / "server.log", startup_s=480) as base:
            served = asyncio.run(_workload(base, "tiny"))
            capture.wait_for(lambda ss: sum(_is_request(s) for s in ss) >= served
                             and any(s.name == "Overall Loading" for s in ss), 120, "the served request spans")
        script = work / "offline.py"
        script.write_text(OFFLINE)
        out = subprocess.run([str(venv_bin / "opentelemetry-instrument"), sys.executable, str(script),
                              str(tiny_model_dir)], env=_otel_env(capture, "vllm-offline"), capture_output=True,
                             text=True, timeout=600)
        assert "generated 3" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]
        capture.wait_for(lambda ss: sum(_is_request(s) for s in ss) >= served + 3, 120, "the offline request spans")
        time.sleep(1.5)  # the servers' last periodic metric exports (every 500 ms) are already in; nothing to wait for
        yield list(capture.traces), list(capture.metrics), served + 3


@pytest.fixture(scope="module")
def stored(captured, tmp_path_factory):
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.install import install
    from vllm_otel_collector.analytics.loads import assemble
    from vllm_otel_collector.store import Store
    from vllm_otel_collector.store.testing import fresh_store, shared_chdb_path

    traces, metrics, requests = captured
    cfg = load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=f"sp_vllm_{os.getpid()}",
                      data_dir=tmp_path_factory.mktemp("ours"), grpc_listen="127.0.0.1:0", http_listen="off",
                      api_listen="off", spool={"fsync": False}, flush_interval_s=0.2,
                      analytics={"evaluation_interval_seconds": 86400})
    ours = Collector(cfg).start()
    assert ours.wait_ready(60)
    through_our_collector(ours, traces, metrics)
    out, made = {"ours": ours.store}, []
    for json_mode in (False, True):
        store = fresh_store("sp_vllm_x", apply_migrations=False)
        made.append(store)
        X.create_exporter_tables(store, json_mode=json_mode)
        install(store, load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=store.database))
        through_the_exporter(store, traces, metrics, json_mode=json_mode)
        out["json" if json_mode else "map"] = store
    for store in out.values():
        assemble(store, time.time() + 3600, settle_seconds=0, lookback_seconds=86400)
    yield out, requests
    ours.stop()
    Store(cfg.dsn, database=cfg.database).command(f"DROP DATABASE IF EXISTS `{cfg.database}`", use_database=False)
    for s in made:
        s.command(f"DROP DATABASE IF EXISTS `{s.database}`", use_database=False)
        s.close()


def test_nothing_is_lost_and_the_served_facts_are_there(stored):
    s, requests = stored
    rows = s["ours"].query("SELECT ServiceName, toString(Status), CachedTokens, OutputTokens FROM llm_requests")
    rows = rows.result_rows
    assert len(rows) == requests
    assert {r[0] for r in rows} == {"vllm-served", "vllm-offline"}
    assert any(r[1] == "abort" for r in rows)  # the client disconnect
    assert any(r[2] > 0 for r in rows)  # prefix-cache hits
    loads = s["ours"].query("SELECT ServiceName, Model, LoadSeconds > 0, WeightsBytes > 0 FROM llm_model_loads FINAL "
                            "ORDER BY ServiceName").result_rows
    assert loads == [("vllm-served", "tiny", 1, 1)]  # --served-model-name
    # the offline engine start has no root span (vLLM's "Overall Loading" wraps the async client only): its steps
    # are stored, no load row is assembled
    steps = s["ours"].query("SELECT DISTINCT SpanName FROM llm_startup_spans FINAL WHERE ServiceName = 'vllm-offline'")
    assert {"Load weights", "Load model"} <= {r[0] for r in steps.result_rows}


@pytest.mark.parametrize("variant", ["map", "json"])
@pytest.mark.parametrize("table", list(SNAPSHOTS))
def test_derived_tables_are_identical_row_by_row(stored, variant, table):
    s, _ = stored
    assert_same(f"{table} ({variant})", s["ours"].query(SNAPSHOTS[table]).result_rows,
                s[variant].query(SNAPSHOTS[table]).result_rows)


@pytest.mark.parametrize("variant", ["map", "json"])
def test_engine_metrics_read_the_same(stored, variant):
    from vllm_otel_collector.analytics.engine import engine_route

    s, _ = stored
    ours = engine_route(s["ours"], {"window": "3600"})
    assert ours[1]["services"], "no engine gauges captured"
    assert json.dumps(ours, sort_keys=True) == json.dumps(engine_route(s[variant], {"window": "3600"}), sort_keys=True)
