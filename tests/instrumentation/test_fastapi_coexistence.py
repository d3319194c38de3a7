"""Living beside other instrumentations (#14 item 5): the OpenAI server under ``opentelemetry-instrument`` with
opentelemetry-instrumentation-fastapi installed, as after ``opentelemetry-bootstrap -a install``.

Default (FastAPI auto-instrumented): one FastAPI SERVER span ``POST /v1/chat/completions`` per request, our request
span is its child in the same trace, and the ASGI layer adds one ``http send`` span per ASGI message of the SSE
stream. Trimmed (``fastapi_trimmed_server.py``: FastAPI instrumented in code with ``exclude_spans=["send",
"receive"]``): no ``http send`` / ``http receive`` spans, the same parent/child relation.
The INTERNAL-vs-SERVER kind of our span under FastAPI's SERVER span is INSTR-TRUTH's logic; asserted here.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from opentelemetry.instrumentation.vllm import semconv as sc
from otlp_sink import Span  # noqa: E402  (tests/instrumentation is on sys.path)
from served_server import instrumented_server  # noqa: E402

pytestmark = pytest.mark.engine
SERVER, INTERNAL = 2, 1  # OTLP span kinds
ROUTE = "POST /v1/chat/completions"
TOKENS = 12


async def _stream(base: str) -> tuple[str, int]:
    """One streaming chat of TOKENS tokens; returns (response id, number of SSE data events incl. [DONE])."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": TOKENS,
            "stream": True, "ignore_eos": True}
    events, rid = 0, None
    async with httpx.AsyncClient(timeout=60) as client:
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    events += 1
                    if line != "data: [DONE]":
                        rid = json.loads(line[6:])["id"]
    return rid, events


def _trace_of(receiver, rid: str, timeout: float = 30.0) -> tuple[Span, list[Span]]:
    """Our request span for response id ``rid`` and every span of its trace (waits for both to arrive)."""
    deadline = time.monotonic() + timeout
    while True:
        ours = [s for s in receiver.spans() if s.attributes.get(sc.RESPONSE_ID) == rid]
        if ours:
            trace = [s for s in receiver.spans() if s.trace_id == ours[0].trace_id]
            if any(s.name == ROUTE for s in trace):
                time.sleep(1.0)  # late ASGI spans of the same trace
                return ours[0], [s for s in receiver.spans() if s.trace_id == ours[0].trace_id]
        assert time.monotonic() < deadline, f"no trace for {rid}: {sorted({s.name for s in receiver.spans()})}"
        time.sleep(0.2)


def _check_parent(ours: Span, trace: list[Span]) -> Span:
    (fastapi,) = [s for s in trace if s.name == ROUTE]
    assert fastapi.kind == SERVER and fastapi.parent_span_id == ""
    assert ours.parent_span_id == fastapi.span_id
    assert [s for s in trace if s.kind == SERVER] == [fastapi]  # one SERVER span per incoming request
    assert ours.kind == INTERNAL
    return fastapi


def test_fastapi_auto_instrumented(tiny_model_dir, tmp_path):
    env = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ""}
    with instrumented_server(tiny_model_dir, tmp_path / "server.log", [], env) as (receiver, base):
        rid, events = asyncio.run(_stream(base))
        ours, trace = _trace_of(receiver, rid)
        fastapi = _check_parent(ours, trace)
        sends = [s for s in trace if s.name == f"{ROUTE} http send"]
        assert all(s.parent_span_id == fastapi.span_id for s in sends)
        # one per ASGI message: http.response.start, one body message per SSE event, the closing empty body
        assert len(sends) == events + 2, (len(sends), events)
        assert events == TOKENS + 2  # role chunk + one per token ... + [DONE] (vLLM's OpenAI stream)
        assert ours.attributes[sc.USAGE_OUTPUT_TOKENS] == TOKENS


def test_fastapi_trimmed_exclude_spans(tiny_model_dir, tmp_path):
    script = Path(__file__).with_name("fastapi_trimmed_server.py")
    env = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "fastapi"}
    with instrumented_server(tiny_model_dir, tmp_path / "server.log", [], env, entry=[str(script)]) as (
            receiver, base):
        rid, _ = asyncio.run(_stream(base))
        ours, trace = _trace_of(receiver, rid)
        _check_parent(ours, trace)
        assert [s.name for s in trace if "http send" in s.name or "http receive" in s.name] == []
        # what is left per request: FastAPI's SERVER span, our request span and its queue/prefill/decode children
        assert sorted(s.name for s in trace) == sorted([ROUTE, "chat tiny", "queue", "prefill", "decode"])
