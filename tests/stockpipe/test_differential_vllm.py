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
import time
from pathlib import Path

import httpx
import pytest

from opentelemetry.instrumentation.vllm import semconv as sc

from . import contrib_exporter as X
from .dataset import hold_baselines, through_our_collector, through_the_exporter
from .test_differential import SNAPSHOTS, assert_same

pytestmark = pytest.mark.engine
LONG_PROMPT = "Explain the roles of prefill and decode in LLM serving, then list five tips. " * 6


def _is_request(span) -> bool:
    return sc.VLLM_FINISH_REASON in span.attributes


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
    from otlp_sink import OtlpSink
    from served_server import instrumented_server, otel_env

    work = tmp_path_factory.mktemp("vllm-diff")
    venv_bin = Path(sys.executable).parent
    no_fastapi = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "fastapi"}
    with OtlpSink(raw=True) as capture:  # keeps every request body as it arrived
        with instrumented_server(tiny_model_dir, work / "server.log", ["--enable-prefix-caching"], no_fastapi,
                                 sink=capture, service="vllm-served") as (_, base):
            served = asyncio.run(_workload(base, "tiny"))
            capture.wait_for(lambda ss: sum(_is_request(s) for s in ss) >= served
                             and any(s.name == "Overall Loading" for s in ss), 120)
        script = work / "offline.py"
        script.write_text(OFFLINE)
        out = subprocess.run([str(venv_bin / "opentelemetry-instrument"), sys.executable, str(script),
                              str(tiny_model_dir)], env=otel_env(capture, "vllm-offline", **no_fastapi), capture_output=True,
                             text=True, timeout=600)
        assert "generated 3" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]
        capture.wait_for(lambda ss: sum(_is_request(s) for s in ss) >= served + 3, 120)
        time.sleep(1.5)  # the servers' last periodic metric exports (every 500 ms) are already in; nothing to wait for
        yield *capture.raw_bodies(), served + 3


@pytest.fixture(scope="module")
def stored(captured, tmp_path_factory):
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.install import install
    from vllm_otel_collector.analytics.loads import assemble
    from vllm_otel_collector.store import Store
    from vllm_otel_collector.store.testing import drop_store, fresh_store, shared_chdb_path

    traces, metrics, requests = captured
    cfg = load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=f"sp_vllm_{os.getpid()}",
                      data_dir=tmp_path_factory.mktemp("ours"), grpc_listen="127.0.0.1:0", http_listen="off",
                      api_listen="off", spool={"fsync": False}, flush_interval_s=0.2,
                      analytics={"evaluation_interval_seconds": 86400})
    ours = Collector(cfg).start()
    assert ours.wait_ready(60)
    hold_baselines(ours.store)
    through_our_collector(ours, traces, metrics)
    out, made = {"ours": ours.store}, []
    for json_mode in (False, True):
        store = fresh_store("sp_vllm_x", apply_migrations=False)
        made.append(store)
        X.create_exporter_tables(store, json_mode=json_mode)
        install(store, load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=store.database))
        hold_baselines(store)
        through_the_exporter(store, traces, metrics, json_mode=json_mode)
        out["json" if json_mode else "map"] = store
    for store in out.values():
        assemble(store, time.time() + 3600, settle_seconds=0, lookback_seconds=86400)
    yield out, requests
    ours.stop()
    Store(cfg.dsn, database=cfg.database).command(f"DROP DATABASE IF EXISTS `{cfg.database}`", use_database=False)
    for s in made:
        drop_store(s)


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
