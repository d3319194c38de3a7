"""Why slow, end to end on real parts: the tiny model on vLLM's CPU engine under opentelemetry-instrument, pushed
into each cause — a long prompt alone (prefill), a burst of long requests against 2 sequence slots and 5 KV-cache
blocks of 128 tokens (preempted), short requests behind it (queued), a client that hangs up (aborted) — then
relaxed SLOs (goodput). The stored causes, the numbers behind
them, the rollups' goodput and ``vllm-otel explain`` are read back from the collector's ClickHouse."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest

from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.sync import sync
from vllm_otel_collector.testing import start_test_collector, stop_test_collector
from vllm_otel_inference.cli import main
from vllm_otel_inference.launcher import VLLMServer, free_port

pytestmark = pytest.mark.engine

#: TTFT SLO 1 µs: every finished request misses it, so its cause is where its TTFT went (queue or prefill) unless
#: vLLM preempted it; TPOT SLO 1000 s: never missed (decode is covered by the unit and property tests).
STRICT = {"slos": [{"model": "tiny", "ttft_seconds": 1e-6, "tpot_seconds": 1000.0}]}
RELAXED = {"slos": [{"model": "tiny", "ttft_seconds": 1000.0, "tpot_seconds": 1000.0}]}


def _traceparent(n: int) -> tuple[str, str]:
    trace = os.urandom(15).hex() + f"{n:02x}"
    return trace, f"00-{trace}-{os.urandom(8).hex()}-01"


def _complete(base: str, n: int, prompt: str, max_tokens: int) -> str:
    trace, header = _traceparent(n)
    r = httpx.post(f"{base}/v1/completions", headers={"traceparent": header}, timeout=600,
                   json={"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
                         "temperature": 0})
    assert r.status_code == 200, r.text[:300]
    return trace


def _hang_up(base: str, n: int, after_s: float = 0.3) -> str:
    """A client that joins a busy engine's queue (0.2 s after the others) and gives up after ``after_s`` seconds on a
    450-token completion that cannot have finished by then (6 × 400 tokens ahead of it on 2 slots): vLLM sees the
    disconnect (its request cancellation) and aborts the request."""
    trace, header = _traceparent(n)
    time.sleep(0.2)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{base}/v1/completions", headers={"traceparent": header}, timeout=after_s,
                   json={"model": "tiny", "prompt": "hi there", "max_tokens": 450, "ignore_eos": True})
    return trace


def _burst(base: str, first: int, n: int, max_tokens: int, also: tuple[threading.Thread, ...] = ()) -> list[str]:
    """``n`` concurrent completions of 61-token prompts (the threads ``also`` started with them); their trace
    ids."""
    out: list[str] = []
    go = threading.Barrier(n)

    def one(k: int) -> None:
        go.wait(timeout=60)  # all at once: the scheduler sees them together
        out.append(_complete(base, first + k, f"count {k} " * 12, max_tokens))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in also:
        t.start()
    for t in threads:
        t.join(timeout=900)
    for t in also:
        t.join(timeout=900)
    assert len(out) == n
    return out


def _rows(store, traces: list[str]) -> dict[str, dict]:
    res = store.query("SELECT * FROM llm_requests WHERE TraceId IN {t:Array(String)}", parameters={"t": traces})
    return {r[res.column_names.index("TraceId")]: dict(zip(res.column_names, r)) for r in res.result_rows}


def _wait_rows(store, traces: list[str], timeout_s: float = 180.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = _rows(store, traces)
        if len(got) == len(traces) or time.monotonic() > deadline:
            assert len(got) == len(traces), f"{len(got)} of {len(traces)} request rows stored"
            return got
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("causes")
    collector = start_test_collector("e2e_causes", tmp / "collector", analytics=STRICT)
    server = VLLMServer(tiny_model_dir, "tiny", f"http://127.0.0.1:{collector.grpc_port}", port=free_port(),
                        log_path=tmp / "vllm.log", max_model_len=512, dtype="float32", ready_timeout_s=600,
                        extra_args=["--enforce-eager", "--max-num-seqs", "2", "--num-gpu-blocks-override", "5",
                                    "--no-enable-prefix-caching"])
    server.start()
    try:
        server.wait_ready()
        yield collector, server
    finally:
        server.stop()
        stop_test_collector(collector)


def test_each_cause_on_a_real_engine(served, capsys):
    collector, server = served
    base, store = server.base_url, collector.store
    long_prompt = _complete(base, 1, "hello " * 110, 2)  # alone on an idle engine: its TTFT is its prefill
    # 6 requests of 61 + 400 tokens (4 blocks of 128 each) on 2 slots and 5 blocks: two run at a time and outgrow
    # the KV cache, so vLLM preempts. Behind them (0.2 s later) a client gives up on a 450-token completion after
    # 0.3 s, and (0.3 s later) 3 short requests wait their turn: queued.
    hung_up: list[str] = []
    queue_burst: list[str] = []
    late = (threading.Thread(target=lambda: hung_up.append(_hang_up(base, 30))),
            *(threading.Thread(target=lambda k=k: (time.sleep(0.3), queue_burst.append(
                _complete(base, 40 + k, f"short {k} " * 12, 8)))) for k in range(3)))
    preempt_burst = _burst(base, 20, 6, 400, also=late)
    (aborted,) = hung_up
    assert len(queue_burst) == 3
    burst = queue_burst + preempt_burst
    rows = _wait_rows(store, [long_prompt, aborted, *burst])

    lp = rows[long_prompt]
    assert lp["InputTokens"] >= 400 and lp["Status"] == "ok"
    assert (lp["Cause"], lp["Good"]) == ("prefill", 0), (lp["Queue"], lp["Prefill"])
    assert lp["PrefixHitShare"] == 0.0 and lp["SLOTTFT"] == pytest.approx(1e-6)

    assert (rows[aborted]["Status"], rows[aborted]["Cause"]) == ("abort", "aborted")

    b = [rows[t] for t in burst]
    seen = [(r["Preemptions"], r["Queue"], r["Prefill"], r["Cause"]) for r in b]
    preempted = [r for r in b if r["Preemptions"] > 0]
    assert any(rows[t]["Preemptions"] > 0 for t in preempt_burst), seen  # 8 blocks wanted, 5 there
    assert all(r["Cause"] == "preempted" for r in preempted), seen
    others = [r for r in b if r["Preemptions"] == 0]
    assert all(r["Cause"] == ("queued" if r["Queue"] >= r["Prefill"] else "prefill") for r in others), seen
    queued = [r for r in b if r["Cause"] == "queued"]
    # the short ones waited behind the long ones (FCFS) for much longer than their prefill
    waited = [rows[t] for t in queue_burst if rows[t]["Preemptions"] == 0]
    assert waited and all(r["Cause"] == "queued" and r["Queue"] > 10 * r["Prefill"] for r in waited), seen
    if waited[0]["WaitingAtArrival"] is not None:  # the engine state at arrival reached the row
        assert all(0 <= r["KVCacheUsageAtArrival"] <= 1 and r["RunningAtArrival"] <= 2 for r in b), seen
    assert sum(r["Good"] for r in b) == 0

    # explain on a real trace: the preempted request's numbers
    api = f"http://127.0.0.1:{collector.api_port}"
    victim = max(preempted, key=lambda r: r["Preemptions"])
    assert main(["explain", victim["TraceId"], "--api", api, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["cause"] == "preempted" and answer["preemptions"] == victim["Preemptions"]
    assert answer["sentence"].startswith(f"preempted: vLLM preempted it {victim['Preemptions']} time")
    assert answer["timeline"][0]["seconds"] == pytest.approx(victim["Queue"])

    # goodput: with SLOs every request meets, the next requests are good; rollups = raw
    sync(store, AnalyticsConfig.load(RELAXED))
    good = [_complete(base, 50 + k, "hi there", 4) for k in range(3)]
    got = _wait_rows(store, good)
    assert [(r["Good"], r["Cause"]) for r in got.values()] == [(1, "ok")] * 3
    everything = [long_prompt, aborted, *burst, *good]
    raw = store.query("SELECT sum(Good), count() FROM llm_requests WHERE TraceId IN {t:Array(String)}",
                      parameters={"t": everything}).result_rows[0]
    assert raw == (3, len(everything))
    for table in ("llm_requests_1m", "llm_requests_1h"):
        assert store.query(f"SELECT sum(Good), sum(Requests), sum(CausePreempted), sum(CauseQueued), "
                           f"sum(CausePrefill) FROM {table} WHERE Model = 'tiny'").result_rows[0] == (
            3, len(everything), len(preempted), len(queued), 1 + sum(r["Cause"] == "prefill" for r in b))
