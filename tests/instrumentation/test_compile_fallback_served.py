"""A real compile-cache fallback (#24): the tiny model served twice with torch.compile on and vLLM's AOT compile
cache in a fresh ``VLLM_CACHE_ROOT``; between the starts the saved artifact is truncated, so the second start finds
it, cannot load it, and compiles again. The second start's model-load trace names the artifact and vLLM's reason on
the span that carries ``vllm.compile.cache_hit`` (false); the first start's has neither."""

from __future__ import annotations

import pytest

from opentelemetry.instrumentation.vllm import semconv as sc
from served_server import instrumented_server  # noqa: E402

pytestmark = pytest.mark.engine

HIT, PATH, REASON = sc.LOAD_COMPILE_CACHE_HIT, sc.LOAD_COMPILE_CACHE_PATH, sc.LOAD_COMPILE_CACHE_FALLBACK_REASON


def _compile_spans(receiver):
    spans = receiver.wait_for(lambda ss: any(HIT in s.attributes for s in ss), timeout=120)
    return [s for s in spans if HIT in s.attributes]


def test_a_corrupted_aot_artifact_is_on_the_next_starts_trace(tiny_model_dir, tmp_path):
    cache = tmp_path / "vllm-cache"
    env = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "fastapi", "VLLM_CACHE_ROOT": str(cache),
           "VLLM_USE_AOT_COMPILE": "1"}
    extra = ["--no-enforce-eager"]  # after the starter's --enforce-eager: torch.compile on
    with instrumented_server(tiny_model_dir, tmp_path / "first.log", extra, env, metrics=False) as (receiver, _):
        first = _compile_spans(receiver)
    assert first and all(s.attributes[HIT] is False and PATH not in s.attributes for s in first)
    artifacts = sorted(cache.glob("torch_compile_cache/torch_aot_compile/*/rank_*/model"))
    assert len(artifacts) == 1, sorted(str(p) for p in cache.rglob("*"))[:50]
    (artifact,) = artifacts
    artifact.write_bytes(artifact.read_bytes()[:64])  # truncated: found, not loadable
    log = tmp_path / "second.log"
    with instrumented_server(tiny_model_dir, log, extra, env, metrics=False) as (receiver, _):
        second = receiver.wait_for(lambda ss: any(PATH in s.attributes for s in ss), timeout=120)
    (span, *more) = [s for s in second if PATH in s.attributes]
    assert {s.name for s in (span, *more)} <= {"Warmup (CPU)", "Prepare model"}
    for s in (span, *more):  # "Warmup (CPU)", and "Prepare model" when compilation ran in EngineCore's process
        a = s.attributes
        assert a[HIT] is False and a[PATH] == str(artifact)
        assert a[REASON] and f"reason: {a[REASON]}" in log.read_text()  # vLLM's own words, verbatim
