"""End to end, real parts only: tiny model on the vLLM CPU engine under opentelemetry-instrument → OTLP/gRPC → the
collector → embedded ClickHouse → rows read back by ``vllm-otel demo --json``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vllm_otel_inference.launcher import free_port

pytestmark = pytest.mark.engine

VLLM_OTEL = str(Path(sys.executable).with_name("vllm-otel"))


def _demo_args(tmp_path: Path, model: Path, *extra: str) -> list[str]:
    return [
        VLLM_OTEL, "demo", "--model", str(model), "--data-dir", str(tmp_path / "data"),
        "--vllm-port", str(free_port()), "--otlp-port", str(free_port()), "--otlp-http-port", str(free_port()),
        "--api-port", str(free_port()), "--dtype", "float32", "--report", str(tmp_path / "report.html"), *extra,
    ]


def _query_store(data_dir: Path, sql: str, params: dict) -> list:
    """Run one query against the demo's chDB store in a fresh process (one chDB path per process)."""
    code = textwrap.dedent(f"""
        import json, sys
        from vllm_otel_collector.store import Store
        store = Store("chdb://{data_dir}/clickhouse")
        rows = store.query(sys.argv[1], parameters=json.loads(sys.argv[2])).result_rows
        print(json.dumps(rows, default=str))
    """)
    out = subprocess.run([sys.executable, "-c", code, sql, json.dumps(params)], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def demo_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    args = _demo_args(tmp, tiny_model_dir, "--json", "--requests", "6", "--concurrency", "3", "--max-tokens", "12")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp / "stderr.txt").write_text(proc.stderr)  # the progress display (the console is stderr with --json)
    return tmp, json.loads(proc.stdout), args


def test_one_request_span_per_request(demo_run):
    _, out, _ = demo_run
    client_ids = [c["trace_id"] for c in out["client"]]
    assert all(c["ok"] for c in out["client"])
    assert sorted(r["trace_id"] for r in out["requests"]) == sorted(client_ids)
    assert out["summary"]["count"] == 6 and out["summary"]["missing_spans"] == 0
    assert out["summary"]["by_status"] == {"ok": 6}


def test_latencies_and_tokens_match_the_client(demo_run):
    _, out, _ = demo_run
    client = {c["trace_id"]: c for c in out["client"]}
    for row in out["requests"]:
        c = client[row["trace_id"]]
        assert 0 < row["ttft_s"] <= row["e2e_s"]
        # The server's first token exists before the client can receive it.
        assert row["ttft_s"] <= c["client_ttft_s"]
        assert row["client_ttft_s"] == c["client_ttft_s"]
        assert row["output_tokens"] == c["output_tokens"]
        assert row["input_tokens"] == c["input_tokens"]
        assert row["tokens_per_s"] == pytest.approx(row["output_tokens"] / row["e2e_s"], rel=1e-3)


def test_first_token_event_inside_the_span(demo_run):
    tmp, out, _ = demo_run
    ids = [r["trace_id"] for r in out["requests"]]
    rows = _query_store(
        tmp / "data",
        "SELECT TraceId, toUnixTimestamp64Nano(Timestamp), Duration, "
        "arrayMap(t -> toUnixTimestamp64Nano(t), arrayFilter((t, n) -> n = 'vllm.first_token', "
        "`Events.Timestamp`, `Events.Name`)) "
        "FROM otel_traces WHERE TraceId IN {ids:Array(String)} AND SpanKind = 'Server'",
        {"ids": ids},
    )
    assert len(rows) == len(ids)
    for _tid, start_ns, duration_ns, first_token_ns in rows:
        assert len(first_token_ns) == 1
        assert int(start_ns) <= int(first_token_ns[0]) <= int(start_ns) + int(duration_ns)


def test_no_process_left_behind(demo_run, tiny_model_dir):
    out = subprocess.run(["pgrep", "-f", f"--model {tiny_model_dir}"], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_missing_model_is_a_one_line_error(tmp_path):
    proc = subprocess.run(_demo_args(tmp_path, tmp_path / "nonexistent"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"vllm-otel demo: error: model directory {tmp_path / 'nonexistent'} does not exist or has no config.json"
    ]


def test_port_in_use_names_the_port(tmp_path, tiny_model_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = _demo_args(tmp_path, tiny_model_dir)
        args[args.index("--otlp-port") + 1] = str(port)
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use (needed for the collector's OTLP/gRPC receiver)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_collector_unreachable_inference_still_serves(tiny_model_dir, tmp_path):
    """Nothing listens on the OTLP port: every request is still served; the exporter's failure is only logged."""
    from vllm_otel_inference.launcher import VLLMServer
    from vllm_otel_inference.workload import run_workload

    dead = free_port()
    server = VLLMServer(tiny_model_dir, "tiny", f"http://127.0.0.1:{dead}", port=free_port(),
                        log_path=tmp_path / "vllm.log", dtype="float32", max_model_len=512,
                        extra_env={"OTEL_EXPORTER_OTLP_TIMEOUT": "1"})  # give up on the dead endpoint quickly
    with server:
        server.wait_ready()
        t0 = time.monotonic()
        results = run_workload(server.base_url, "tiny", requests=4, concurrency=2, max_tokens=8)
        print(f"workload took {time.monotonic() - t0:.1f} s")
    assert [r.ok for r in results] == [True] * 4
    assert all(r.output_tokens and r.output_tokens > 0 for r in results)


def test_model_load_row_assembled_from_the_load_trace(demo_run, tiny_model_dir):
    _, out, _ = demo_run
    load = out["model_load"]
    assert load is not None
    assert load["WeightsBytes"] == (tiny_model_dir / "model.safetensors").stat().st_size
    assert load["SpanCount"] >= 5  # Overall Loading, Load model, Load weights, Allocate KV cache, ... across processes
    assert 0 < load["LoadSeconds"] <= load["ColdStartSeconds"]
    assert load["KVCacheBlocks"] > 0
    # Not eager: torch.compile ran (or loaded its cache) in the worker during "Warmup (CPU)".
    assert load["CompileSeconds"] > 0 and load["CompileCacheHit"] in (0, 1)


def test_engine_start_shown_live_phase_by_phase(demo_run, tiny_model_dir):
    """The demo's progress display folded the real engine-start spans while vLLM loaded; its last frame (stderr,
    since --json) shows every phase done and agrees with the assembled llm_model_loads row."""
    tmp, out, _ = demo_run
    start, load = out["engine_start"], out["model_load"]
    assert start is not None and start["ready"] and start["trace_id"] == load["TraceId"]
    assert start["model"] == load["Model"] == tiny_model_dir.name
    frame = (tmp / "stderr.txt").read_text()
    assert f"engine start — {tiny_model_dir.name} ready in {start['load_seconds']:.1f} s" in frame
    phases = {p["phase"]: p for p in start["phases"]}
    assert [p["state"] for p in start["phases"]] == ["done"] * 5
    assert phases["weights"]["bytes"] == (tiny_model_dir / "model.safetensors").stat().st_size
    assert phases["kv_cache"]["blocks"] == load["KVCacheBlocks"]
    assert phases["compile"]["seconds"] == pytest.approx(load["CompileSeconds"])
    assert start["compile_cache_hit"] == bool(load["CompileCacheHit"])
    assert start["load_seconds"] == pytest.approx(load["LoadSeconds"])
