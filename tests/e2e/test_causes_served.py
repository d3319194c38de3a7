"""Why slow, end to end on real parts: the tiny model on vLLM's CPU engine under opentelemetry-instrument, pushed
into each cause — a long prompt alone (prefill), long requests against 2 sequence slots and 16 usable KV-cache
blocks of 128 tokens (preempted), short requests queued behind them (queued), a client that hangs up (aborted) —
then relaxed SLOs (goodput). The stored causes, the numbers behind
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


def _hang_up_after_first_chunk(base: str, n: int) -> str:
    """A streaming completion of 1900 tokens whose client hangs up after the first chunk; its trace id."""
    trace, header = _traceparent(n)
    with httpx.stream("POST", f"{base}/v1/completions", headers={"traceparent": header}, timeout=600,
                      json={"model": "tiny", "prompt": "hi there", "max_tokens": 1900, "ignore_eos": True,
                            "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                break  # leaving the block closes the connection: vLLM aborts the request
    return trace


def _an_abort(store, base: str, attempts: int = 5) -> str:
    """The trace id of a request vLLM aborted because its client hung up. On a loaded machine vLLM may have
    generated all 1900 tokens before it saw the hang-up (that request is stored complete, as ok); then try again."""
    for k in range(attempts):
        trace = _hang_up_after_first_chunk(base, 30 + k)
        row = _wait_rows(store, [trace])[trace]
        if row["Status"] == "abort":
            return trace
        assert (row["Status"], row["OutputTokens"]) == ("ok", 1900), row  # finished before the hang-up landed
    raise AssertionError(f"no hang-up in {attempts} reached vLLM before its request finished")


def _streamed(base: str, n: int, prompt: str, max_tokens: int, started: threading.Semaphore) -> str:
    """A streaming completion read to its end; ``started`` is released at its first token. Its trace id."""
    trace, header = _traceparent(n)
    first = True
    with httpx.stream("POST", f"{base}/v1/completions", headers={"traceparent": header}, timeout=600,
                      json={"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
                            "stream": True}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if first and line.startswith("data:"):
                started.release()
                first = False
    return trace


def _slot_round(base: str, first: int) -> tuple[list[str], list[str]]:
    """4 streamed requests of 61 + 960 tokens; once two are generating, 3 short ones. ``(shorts, longs)`` trace ids."""
    shorts_out: list[str] = []
    longs_out: list[str] = []
    started = threading.Semaphore(0)
    longs = [threading.Thread(target=lambda k=k: longs_out.append(
        _streamed(base, first + k, f"count {k} " * 12, 960, started))) for k in range(4)]
    for t in longs:
        t.start()
    for _ in range(2):  # two are generating: both slots are taken for their next ~950 tokens
        assert started.acquire(timeout=300)
    shorts = [threading.Thread(target=lambda k=k: shorts_out.append(
        _complete(base, first + 5 + k, f"short {k} " * 12, 8))) for k in range(3)]
    for t in shorts:
        t.start()
    for t in shorts + longs:
        t.join(timeout=900)
    assert len(shorts_out) == 3 and len(longs_out) == 4
    return shorts_out, longs_out


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
                        log_path=tmp / "vllm.log", max_model_len=2048, dtype="float32", ready_timeout_s=600,
                        extra_args=["--enforce-eager", "--max-num-seqs", "2", "--num-gpu-blocks-override", "17",
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
    # Slots bind: 4 streamed requests of 61 + 960 tokens (8 blocks of 128 each: two running fit the 17 blocks, no
    # preemption) on 2 slots; once two of them are generating, 3 short requests arrive: they wait for a slot (queued).
    # (The collector shares this process: while it inserts, the client threads here can stall, so a short request may
    # reach vLLM only after a slot freed. Then — up to 3 rounds — another round, until the shorts did queue.)
    queue_burst: list[str] = []
    slot_burst: list[str] = []
    for attempt in range(3):
        shorts_now, longs_now = _slot_round(base, 10 + 10 * attempt)
        queue_burst += shorts_now
        slot_burst += longs_now
        got = _wait_rows(store, shorts_now)
        if sum(r["Queue"] > 10 * r["Prefill"] for r in got.values()) >= 2:
            break
    # KV binds: 3 requests of 61 + 1900 tokens (16 blocks each) on 2 slots and 17 blocks: any two generating together
    # outgrow the KV cache, so vLLM must preempt. On a loaded machine the API server can hand them to the engine so
    # far apart that each runs alone; then (up to 3 bursts) send another burst until vLLM preempted one.
    preempt_burst: list[str] = []
    for attempt in range(3):
        this = _burst(base, 50 + 10 * attempt, 3, 1900)
        preempt_burst += this
        if any(r["Preemptions"] > 0 for r in _wait_rows(store, this).values()):
            break
    aborted = _an_abort(store, base)
    burst = queue_burst + slot_burst + preempt_burst
    rows = _wait_rows(store, [long_prompt, aborted, *burst])

    lp = rows[long_prompt]
    assert lp["InputTokens"] >= 400 and lp["Status"] == "ok"
    assert (lp["Cause"], lp["Good"]) == ("prefill", 0), (lp["Queue"], lp["Prefill"])
    assert lp["PrefixHitShare"] == 0.0 and lp["SLOTTFT"] == pytest.approx(1e-6)

    assert (rows[aborted]["Status"], rows[aborted]["Cause"]) == ("abort", "aborted")

    b = [rows[t] for t in burst]
    seen = [(r["Preemptions"], r["Queue"], r["Prefill"], r["Cause"]) for r in b]
    preempted = [r for r in b if r["Preemptions"] > 0]
    assert any(rows[t]["Preemptions"] > 0 for t in preempt_burst), seen  # 2 × 16 blocks wanted, 17 there
    assert all(rows[t]["Preemptions"] == 0 for t in slot_burst + queue_burst), seen
    assert all(r["Cause"] == "preempted" for r in preempted), seen
    others = [r for r in b if r["Preemptions"] == 0]
    assert all(r["Cause"] == ("queued" if r["Queue"] >= r["Prefill"] else "prefill") for r in others), seen
    # the short ones joined a queue of long requests while the slots bound (no preemption there): queued, most of
    # them for far longer than their prefill
    short = [(rows[t]["Preemptions"], rows[t]["Queue"], rows[t]["Prefill"], rows[t]["Cause"]) for t in queue_burst]
    waited = [rows[t] for t in queue_burst if rows[t]["Preemptions"] == 0]
    assert len(waited) == len(queue_burst) and all(
        r["Cause"] == ("queued" if r["Queue"] >= r["Prefill"] else "prefill") for r in waited), short
    assert sum(r["Cause"] == "queued" and r["Queue"] > 10 * r["Prefill"] for r in waited) >= 2, short
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
    # every request of the model (a hang-up vLLM finished first, if any, too): the rollups equal the raw rows
    want = store.query("SELECT sum(Good), count(), countIf(Cause = 'preempted'), countIf(Cause = 'queued'), "
                       "countIf(Cause = 'prefill'), countIf(Cause = 'aborted') FROM llm_requests "
                       "WHERE Model = 'tiny'").result_rows[0]
    assert want[0] == 3 and want[2] == len(preempted) and want[5] == 1
    for table in ("llm_requests_1m", "llm_requests_5m", "llm_requests_1h"):
        assert store.query(f"SELECT sum(Good), sum(Requests), sum(CausePreempted), sum(CauseQueued), "
                           f"sum(CausePrefill), sum(Aborts) FROM {table} WHERE Model = 'tiny'").result_rows[0] == want
