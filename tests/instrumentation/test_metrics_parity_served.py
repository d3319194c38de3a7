"""Parity over OTLP: the OpenAI server under ``opentelemetry-instrument`` with vLLM's Prometheus ``/metrics`` and our
OTLP metrics both on. For one served workload (streaming chats, a batch completion, an ``n=2`` completion, repeated
prompts for prefix-cache hits, client disconnects), every mirrored counter and histogram has the same delta (sum and
count; buckets too) in our OTLP export as in vLLM's ``/metrics``. A second server runs speculative decoding (vLLM's
ngram proposer) and LoRA (a tiny random adapter built here): their metrics are present and equal to vLLM's.

The GenAI semconv request metrics count client requests (one per ``n=2`` request, aborted ones included) where vLLM
counts finished sequences; the test asserts that exact relation.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opentelemetry.instrumentation.vllm.engine import table as em
from opentelemetry.instrumentation.vllm import semconv as sc
from otlp_sink import OtlpSink  # noqa: E402  (tests/instrumentation is on sys.path)
from served_server import hook_calls, instrumented_server as _server  # noqa: E402
from prom_map import MIRRORED, TO_SEMCONV  # noqa: E402

pytestmark = pytest.mark.engine
N2 = 2  # the n of the parallel-sampling request


def _prom(base: str) -> dict[tuple[str, tuple], float]:
    """vLLM's /metrics samples: (sample name, sorted labels without model_name) -> value."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("vllm:"):
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "model_name"))
                out[(s.name, labels)] = s.value
    return out


def _ours(receiver: OtlpSink) -> dict[str, list]:
    return {name: receiver.points(name) for name in receiver.names()}


def _settle(receiver: OtlpSink, base: str) -> tuple[dict, dict]:
    """Wait until the engine is idle and two more exports went out (each collection drains every queued step),
    then read both sides."""
    deadline = time.monotonic() + 60
    while True:
        prom = _prom(base)
        busy = sum(v for (n, _), v in prom.items() if n in ("vllm:num_requests_running", "vllm:num_requests_waiting"))
        if not busy:
            break
        assert time.monotonic() < deadline, "engine never went idle"
        time.sleep(0.2)
    time.sleep(0.5)  # the request writer (spans + request metrics) runs after the engine finished
    receiver.wait_exports(3)
    return _prom(base), _ours(receiver)


def _prom_value(prom: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in prom.items() if n == name and want <= set(lab))


def _our_value(ours: dict, name: str, field: str = "value", **attrs) -> float:
    return sum(getattr(p, field) for p in ours.get(name, []) if all(p.attributes.get(k) == v for k, v in attrs.items()))


def _assert_mirrors_equal(before: tuple[dict, dict], after: tuple[dict, dict]) -> int:
    """Every mirrored counter and histogram: our delta == vLLM's delta (per label value); returns metrics checked."""
    (p0, o0), (p1, o1) = before, after
    checked = 0
    for otel_name, (prom_name, label, attr) in MIRRORED.items():
        kind = em.METRICS[otel_name][0]
        if kind == em.GAUGE:
            continue
        if kind == em.HISTOGRAM:
            for field, suffix in (("count", "_count"), ("sum", "_sum")):
                ours = _our_value(o1, otel_name, field) - _our_value(o0, otel_name, field)
                theirs = _prom_value(p1, prom_name + suffix) - _prom_value(p0, prom_name + suffix)
                assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9), (otel_name, field, ours, theirs)
            checked += 1
            continue
        values = {s[1] for s in p1 if s[0] == prom_name + "_total"}
        label_values = {dict(lab).get(label) for lab in values} if label else {None}
        for lv in label_values:
            sel = {attr: (int(lv) if attr == sc.VLLM_SPEC_POSITION else lv)} if label else {}
            ours = _our_value(o1, otel_name, **sel) - _our_value(o0, otel_name, **sel)
            theirs = (_prom_value(p1, prom_name + "_total", **({label: lv} if label else {}))
                      - _prom_value(p0, prom_name + "_total", **({label: lv} if label else {})))
            assert ours == theirs, (otel_name, lv, ours, theirs)
        checked += 1
    return checked


async def _chat(client, base, text, max_tokens, *, disconnect=False, model="tiny", temperature=0.8):
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
            "stream": True, "ignore_eos": True, "temperature": temperature, "seed": 7}
    got = 0
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                got += 1
                if disconnect and got >= 2:
                    break  # closing the stream = client disconnect
    return got


# long enough for several full KV blocks (the CPU build's block size is large), under --max-model-len 2048
LONG_PROMPT = " ".join(["OpenTelemetry traces metrics and logs describe what a service does."] * 40)


@pytest.mark.parametrize("source", ["registry", "stat_logger"])
def test_parity_with_vllm_prometheus(tiny_model_dir, tmp_path, source):
    """Both engine-metric sources (engine/source.py): vLLM's registry (the default: no call of ours per engine step)
    and our stat logger (the fallback), each proven in use by the server's hook accounting."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    env = {"VLLM_OTEL_BENCH_HOOK_TIMES": str(hooks)}
    if source == "stat_logger":
        env["OTEL_INSTRUMENTATION_VLLM_ENGINE_METRICS_FROM_REGISTRY"] = "false"
    started: list = []
    # prefix caching is off by default on the CPU build: on, so that prefix-cache counters move
    with _server(tiny_model_dir, tmp_path / "server.log", ["--disable-log-stats", "--enable-prefix-caching"],
                 env_extra=env, started=started) as (receiver, base):
        before = _settle(receiver, base)

        async def workload():
            async with httpx.AsyncClient(timeout=120) as client:
                await _chat(client, base, LONG_PROMPT, 5)  # fills the prefix cache: the two below hit it
                chats = [_chat(client, base, f"question {i}", 6 + i) for i in range(6)]
                chats += [_chat(client, base, LONG_PROMPT, 5) for _ in range(2)]
                cut = [_chat(client, base, f"long story {i}", 1800, disconnect=True) for i in range(3)]
                n2 = client.post(f"{base}/v1/completions", json={
                    "model": "tiny", "prompt": "The quick brown fox", "max_tokens": 8, "n": N2, "ignore_eos": True,
                    "temperature": 0.9, "seed": 3})
                batch = client.post(f"{base}/v1/completions", json={
                    "model": "tiny", "prompt": ["one two", "three four five"], "max_tokens": 4, "ignore_eos": True})
                results = await asyncio.gather(*chats, *cut, n2, batch)
                assert all(r.status_code == 200 for r in results[-2:])
                return results

        asyncio.run(workload())
        after = _settle(receiver, base)
        # A disconnect the server notices only after the whole stream was generated is a normal finish (a client
        # starved of CPU on a busy machine reads its first chunks late): disconnect again, alone, until one abort
        # has been counted — the abort path is what this part is about.
        cuts = 3

        async def one_more_cut():
            async with httpx.AsyncClient(timeout=120) as client:
                await _chat(client, base, f"long story {cuts}", 1800, disconnect=True)

        while _our_value(after[1], sc.METRIC_REQUESTS, **{sc.VLLM_FINISH_REASON: "abort"}) - _our_value(
                before[1], sc.METRIC_REQUESTS, **{sc.VLLM_FINISH_REASON: "abort"}) == 0 and cuts < 13:
            asyncio.run(one_more_cut())
            cuts += 1
            after = _settle(receiver, base)
        checked = _assert_mirrors_equal(before, after)
        assert checked >= 30, checked
        (p0, o0), (p1, o1) = before, after

        def d_prom(name, **labels):
            return _prom_value(p1, name, **labels) - _prom_value(p0, name, **labels)

        def d_ours(name, field="value", **attrs):
            return _our_value(o1, name, field, **attrs) - _our_value(o0, name, field, **attrs)

        # the workload really exercised what it claims
        assert d_prom("vllm:prefix_cache_hits_total") > 0
        # semconv request metrics: one point per client request (n=2 once, disconnects included)
        aborted = d_ours(sc.METRIC_REQUESTS, **{sc.VLLM_FINISH_REASON: "abort"})
        assert 1 <= aborted <= cuts  # a disconnect noticed only after the whole stream finishes is a normal finish
        assert d_ours(sc.METRIC_REQUESTS) == 9 + cuts + 1 + 2  # chats, disconnecting chats, n=2, 2-prompt batch
        # vLLM: every finished sequence (n=2 twice), client disconnects not at all
        assert d_prom("vllm:request_success_total") == 9 + N2 + 2 + (cuts - aborted)
        assert d_prom("vllm:request_success_total", finished_reason="abort") == 0
        # observed once per request that finished in the engine (an n=2 request once, when its last sequence did)
        finished = 9 + 1 + 2 + (cuts - aborted)
        assert d_prom("vllm:request_params_n_count") == d_prom("vllm:request_max_num_generation_tokens_count") == finished
        assert d_prom("vllm:request_params_n_sum") == finished + N2 - 1
        seq_extra = N2 - 1  # vLLM counts each of the n sequences
        ttft = d_ours(sc.METRIC_TTFT, "count")
        assert ttft == d_prom("vllm:time_to_first_token_seconds_count") - seq_extra
        assert d_ours(sc.METRIC_REQUEST_DURATION, "count") == (
            d_prom("vllm:e2e_request_latency_seconds_count") - seq_extra + aborted)
        tpot = d_ours(sc.METRIC_TPOT, "count")
        finished_seq = d_prom("vllm:request_time_per_output_token_seconds_count")
        assert finished_seq - seq_extra <= tpot <= finished_seq - seq_extra + aborted
        assert set(TO_SEMCONV.values()) <= set(o1)
        # per-engine attributes on every mirrored point
        for name in MIRRORED:
            for p in o1.get(name, []):
                if name != sc.METRIC_ADMISSION_REJECTIONS:
                    assert p.attributes[sc.VLLM_ENGINE_INDEX] == 0 and p.attributes[sc.REQUEST_MODEL] == "tiny"
        assert _our_value(o1, sc.METRIC_ENGINE_STATS_DROPPED) == 0
        assert sc.METRIC_ENGINE_VALUES_REJECTED not in o1
        calls = hook_calls(hooks, started[0].pid)
        if source == "registry":  # nothing of ours per engine step; snapshots went to the telemetry child
            assert calls.get("stat_logger.record", 0) == 0 and calls["engine.registry_snapshot"] > 0, calls
        else:
            assert calls["stat_logger.record"] > 0 and calls.get("engine.registry_snapshot", 0) == 0, calls


def _tiny_lora(model_dir: Path, out: Path, rank: int = 8) -> Path:
    """A random LoRA adapter (q_proj, v_proj of every layer) in PEFT's on-disk format, for the tiny model."""
    import torch
    from safetensors.torch import save_file

    cfg = json.loads((model_dir / "config.json").read_text())
    hidden, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * (hidden // cfg["num_attention_heads"])
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for i in range(layers):
        for proj, out_dim in (("q_proj", hidden), ("v_proj", kv)):
            prefix = f"base_model.model.model.layers.{i}.self_attn.{proj}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, hidden, generator=gen) * 0.01
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out_dim, rank, generator=gen) * 0.01
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"], "bias": "none", "base_model_name_or_path": str(model_dir)}))
    return out


def test_spec_decode_and_lora_metrics(tiny_model_dir, tmp_path):
    """ngram speculative decoding (k=3) and a LoRA adapter on the CPU build: the spec-decode counters and the
    LoRA gauges are exported, equal to vLLM's /metrics, and consistent (accepted <= drafted, per-position sums)."""
    lora = _tiny_lora(Path(tiny_model_dir), tmp_path / "tiny-lora")
    spec = json.dumps({"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3,
                       "prompt_lookup_min": 1})
    extra = ["--speculative-config", spec, "--enable-lora", "--max-loras", "1", "--max-lora-rank", "8",
             "--lora-modules", f"tiny-lora={lora}"]
    with _server(tiny_model_dir, tmp_path / "server.log", extra) as (receiver, base):
        before = _settle(receiver, base)
        seen_lora: list[float] = []

        async def workload():
            async with httpx.AsyncClient(timeout=120) as client:
                repeat = " ".join(["alpha beta gamma delta"] * 12)
                # The running-LoRA gauge is read at a metric export (every 0.5 s): an adapter request runs until
                # one export has shown it running — a request that finished unseen is followed by another.
                lora_runs = []
                deadline = time.monotonic() + 240
                while time.monotonic() < deadline:
                    if not lora_runs or lora_runs[-1].done():
                        lora_runs.append(asyncio.ensure_future(_chat(client, base, repeat, 1500, model="tiny-lora",
                                                                     temperature=0.0)))
                    seen_lora.extend(p.value for p in receiver.points(sc.METRIC_LORA_RUNNING)
                                     if p.attributes.get(sc.VLLM_LORA_NAME) == "tiny-lora")
                    if seen_lora and max(seen_lora) >= 1:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.gather(*lora_runs, *[_chat(client, base, repeat, 40, temperature=0.0)
                                                   for _ in range(4)])

        asyncio.run(workload())
        after = _settle(receiver, base)
        assert _assert_mirrors_equal(before, after) >= 30
        (_, o0), (p1, o1) = before, after
        drafts = _our_value(o1, sc.METRIC_SPEC_DRAFTS) - _our_value(o0, sc.METRIC_SPEC_DRAFTS)
        drafted = _our_value(o1, sc.METRIC_SPEC_DRAFT_TOKENS) - _our_value(o0, sc.METRIC_SPEC_DRAFT_TOKENS)
        accepted = _our_value(o1, sc.METRIC_SPEC_ACCEPTED_TOKENS) - _our_value(o0, sc.METRIC_SPEC_ACCEPTED_TOKENS)
        per_pos = {p.attributes[sc.VLLM_SPEC_POSITION]: p.value for p in o1[sc.METRIC_SPEC_ACCEPTED_PER_POS]}
        assert drafts > 0 and 0 <= accepted <= drafted <= 3 * drafts
        assert set(per_pos) == {0, 1, 2} and sum(per_pos.values()) == _our_value(o1, sc.METRIC_SPEC_ACCEPTED_TOKENS)
        assert per_pos[0] >= per_pos[1] >= per_pos[2]  # position k accepted only if k-1 was
        (max_lora,) = o1[sc.METRIC_LORA_MAX]
        assert max_lora.value == 1
        assert seen_lora and max(seen_lora) == 1  # the adapter's running request, seen while it ran
        # the adapters of the last scheduler stats, as vLLM's own info gauge shows them (its newest series)
        info = [(v, dict(lab)) for (n, lab), v in p1.items() if n == "vllm:lora_requests_info"]
        newest = max(info, key=lambda x: x[0])[1]
        for ours_name, label in ((sc.METRIC_LORA_RUNNING, "running_lora_adapters"),
                                 (sc.METRIC_LORA_WAITING, "waiting_lora_adapters")):
            assert {p.attributes[sc.VLLM_LORA_NAME] for p in o1.get(ours_name, [])} == (
                set(newest[label].split(",")) - {""}), ours_name
        assert newest["max_lora"] == "1"
        lora_spans = [s for s in receiver.spans() if s.attributes.get(sc.VLLM_LORA_NAME) == "tiny-lora"]
        assert len(lora_spans) == 1


def test_spec_decode_metrics_from_the_registry(tiny_model_dir, tmp_path):
    """Speculative decoding without LoRA: the engine set comes from vLLM's registry (no call of ours per step, proven by
    the hook accounting), and the spec-decode counters equal /metrics and are consistent."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    spec = json.dumps({"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3,
                       "prompt_lookup_min": 1})
    started: list = []
    with _server(tiny_model_dir, tmp_path / "server.log", ["--speculative-config", spec],
                 env_extra={"VLLM_OTEL_BENCH_HOOK_TIMES": str(hooks)}, started=started) as (receiver, base):
        before = _settle(receiver, base)

        async def workload():
            async with httpx.AsyncClient(timeout=120) as client:
                repeat = " ".join(["alpha beta gamma delta"] * 12)
                await asyncio.gather(*[_chat(client, base, repeat, 40, temperature=0.0) for _ in range(4)])

        asyncio.run(workload())
        after = _settle(receiver, base)
        assert _assert_mirrors_equal(before, after) >= 30
        (_, o0), (_, o1) = before, after
        drafts = _our_value(o1, sc.METRIC_SPEC_DRAFTS) - _our_value(o0, sc.METRIC_SPEC_DRAFTS)
        drafted = _our_value(o1, sc.METRIC_SPEC_DRAFT_TOKENS) - _our_value(o0, sc.METRIC_SPEC_DRAFT_TOKENS)
        accepted = _our_value(o1, sc.METRIC_SPEC_ACCEPTED_TOKENS) - _our_value(o0, sc.METRIC_SPEC_ACCEPTED_TOKENS)
        per_pos = {p.attributes[sc.VLLM_SPEC_POSITION]: p.value for p in o1[sc.METRIC_SPEC_ACCEPTED_PER_POS]}
        assert drafts > 0 and 0 <= accepted <= drafted <= 3 * drafts
        assert set(per_pos) == {0, 1, 2}  # integers, as on the stat-logger source
        assert sum(per_pos.values()) == _our_value(o1, sc.METRIC_SPEC_ACCEPTED_TOKENS)
        calls = hook_calls(hooks, started[0].pid)
        assert calls.get("stat_logger.record", 0) == 0 and calls["engine.registry_snapshot"] > 0, calls
