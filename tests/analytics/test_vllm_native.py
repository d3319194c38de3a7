"""A real vLLM CPU engine with vLLM's own tracing → collector (analytics on) → llm_requests rows whose values equal
the native ``llm_request`` spans' attributes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest


pytestmark = pytest.mark.engine

SCRIPT = textwrap.dedent("""
    import sys
    if __name__ == "__main__":
        from vllm import LLM, SamplingParams
        llm = LLM(model=sys.argv[1], otlp_traces_endpoint=sys.argv[2], disable_log_stats=False, max_model_len=256,
                  enforce_eager=True)
        outs = llm.generate(["Hello, my name is", "The capital of France is", "1 2 3"],
                            [SamplingParams(max_tokens=n, temperature=0, ignore_eos=True) for n in (4, 7, 1)])
        print("generated", [len(o.outputs[0].token_ids) for o in outs], flush=True)
""")


def test_native_llm_request_spans_become_rows(collector, tiny_model_dir, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OTEL_SERVICE_NAME": "vllm-native"}
    proc = subprocess.run([sys.executable, str(script), str(tiny_model_dir), f"127.0.0.1:{collector.grpc_port}"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "generated [4, 7, 1]" in proc.stdout
    store = collector.store
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and store.query("SELECT count() FROM llm_requests").result_rows[0][0] < 3:
        time.sleep(0.3)
    spans = store.query(
        "SELECT SpanId, SpanAttributes FROM otel_traces WHERE SpanName = 'llm_request' ORDER BY SpanId").result_rows
    rows = store.query("SELECT SpanId, ServiceName, Operation, Status, TTFT, E2E, Queue, Prefill, Decode, TPOT, "
                       "InputTokens, OutputTokens FROM llm_requests ORDER BY SpanId").result_rows
    assert len(spans) == len(rows) == 3
    for (sid, attrs), row in zip(spans, rows):
        a = {k: float(v) for k, v in attrs.items() if k.startswith("gen_ai.latency") or k.startswith("gen_ai.usage")}
        out = int(a["gen_ai.usage.completion_tokens"])
        assert row[:4] == (sid, "vllm-native", "llm_request", "ok")
        assert row[4:9] == pytest.approx((a["gen_ai.latency.time_to_first_token"], a["gen_ai.latency.e2e"],
                                          a["gen_ai.latency.time_in_queue"],
                                          a["gen_ai.latency.time_in_model_prefill"],
                                          a["gen_ai.latency.time_in_model_decode"]), rel=1e-6)
        assert row[9] == (None if out < 2 else pytest.approx(a["gen_ai.latency.time_in_model_decode"] / (out - 1),
                                                             rel=1e-6))
        assert row[10:] == (int(a["gen_ai.usage.prompt_tokens"]), out)
    assert sorted(r[11] for r in rows) == [1, 4, 7]
