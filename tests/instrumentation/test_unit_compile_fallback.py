"""Why a model start was slow (#24): vLLM could not load its torch.compile AOT artifact and compiled again. vLLM's
real load attempt (``vllm.compilation.decorators._try_load_aot_compiled_fn``) on a corrupted artifact, its real
warning through its own logger, and the attributes on the span that carries ``vllm.compile.cache_hit``:
``vllm.compile.cache_path``, ``vllm.compile.cache_fallback_reason`` (vLLM's reason verbatim, truncated), cache_hit
false."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.hooks import model_load

pytestmark = pytest.mark.engine  # imports vLLM's compilation package (a VllmConfig: ~20 s on this machine)


@pytest.fixture(scope="module")
def vllm_model():
    """What ``_try_load_aot_compiled_fn`` reads of the model being compiled (vLLM's ``@support_torch_compile``
    instance): its VllmConfig, ``_is_encoder``, ``forward``."""
    from vllm.config import VllmConfig

    cfg = VllmConfig()

    class Model:
        vllm_config = cfg
        compilation_config = cfg.compilation_config
        _is_encoder = False

        def forward(self):  # noqa: D401 - only its __globals__ are read
            return None

    return Model()


@pytest.fixture()
def watched():
    model_load._scratch.clear()
    flt = model_load.watch_compile_fallback()
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # what vLLM's own handlers get: the record goes on unchanged
    logger = logging.getLogger(model_load.COMPILE_LOGGER)
    logger.addHandler(handler)
    yield SimpleNamespace(filter=flt, seen=seen)
    logger.removeHandler(handler)
    model_load.unwatch_compile_fallback()
    model_load._scratch.clear()


def _counter():
    from vllm.compilation.counter import compilation_counter

    return compilation_counter


@pytest.mark.parametrize("content,reason", [(b"", "Compile cache file corrupted."),  # vLLM's EOFError wording
                                            (b"not a pickle", None)])  # str(exception), whatever it is
def test_a_corrupted_artifact_is_recorded_on_the_cache_hit_spans(sdk, vllm_model, watched, tmp_path, content,
                                                                 reason):
    from vllm.compilation.decorators import _try_load_aot_compiled_fn

    path = tmp_path / "rank_0_0" / "model"
    path.parent.mkdir()
    path.write_bytes(content)
    runner = SimpleNamespace(vllm_config=vllm_model.vllm_config)
    # the uniproc nesting: EngineCore's "Prepare model" around the CPU worker's "Warmup (CPU)"
    with sdk.tracer.start_as_current_span("Prepare model") as prepare:
        p_token = model_load._prepare_before((), {})
        with sdk.tracer.start_as_current_span("Warmup (CPU)") as warmup:
            w_token = model_load._warmup_before((runner,), {})
            assert _try_load_aot_compiled_fn(vllm_model, str(path)) is None  # vLLM's real attempt: it falls back
            _counter().num_aot_compiles += 1  # ... and compiles again
            model_load._warmup_after(warmup, w_token, None, (runner,), {})
        model_load._prepare_after(prepare, p_token, None, (None, vllm_model.vllm_config), {})
    spans = {s.name: s.attributes for s in sdk.exporter.get_finished_spans()}
    for name in ("Warmup (CPU)", "Prepare model"):
        a = spans[name]
        assert a[sc.LOAD_COMPILE_CACHE_HIT] is False
        assert a[sc.LOAD_COMPILE_CACHE_PATH] == str(path)
        assert a[sc.LOAD_COMPILE_CACHE_FALLBACK_REASON] == (reason or a[sc.LOAD_COMPILE_CACHE_FALLBACK_REASON])
        assert a[sc.LOAD_COMPILE_CACHE_FALLBACK_REASON]
    (record,) = watched.seen  # vLLM's warning still reaches its handlers, unchanged
    assert record.args[-2:] == (str(path), spans["Warmup (CPU)"][sc.LOAD_COMPILE_CACHE_FALLBACK_REASON])
    assert "compile_fallback" not in model_load._scratch  # "Prepare model" took it: a later start starts clean


def test_a_cache_hit_has_no_fallback_attributes(sdk, watched):
    with sdk.tracer.start_as_current_span("Warmup (CPU)") as warmup:
        token = model_load._warmup_before((None,), {})
        _counter().num_aot_artifacts_loaded += 1  # vLLM loaded its artifact
        model_load._warmup_after(warmup, token, None, (None,), {})
    (span,) = sdk.exporter.get_finished_spans()
    assert span.attributes[sc.LOAD_COMPILE_CACHE_HIT] is True
    assert sc.LOAD_COMPILE_CACHE_PATH not in span.attributes
    assert sc.LOAD_COMPILE_CACHE_FALLBACK_REASON not in span.attributes


def test_the_reason_is_verbatim_and_truncated(watched):
    from vllm.compilation import decorators

    long = "RuntimeError: " + "x" * 5000
    # vLLM's own logger and format string (0.32: a tag prefix first; 0.29-0.31: path and reason only)
    decorators.logger.warning("%sCompiling model again due to a load failure from %s, reason: %s",
                              "[backbone] ", "/c/model", long)
    assert model_load._scratch["compile_fallback"] == ("/c/model", long[:model_load.MAX_REASON_CHARS])
    decorators.logger.warning("Compiling model again due to a load failure from %s, reason: %s", "/old", "why")
    assert model_load._scratch["compile_fallback"] == ("/old", "why")
    decorators.logger.warning("Directly load AOT compilation from path %s", "/ok")  # other records: untouched
    decorators.logger.warning("Compiling model again due to a load failure from %s", "/no-reason")  # malformed
    assert model_load._scratch["compile_fallback"] == ("/old", "why") and len(watched.seen) == 4


def test_uninstrumented_records_nothing(watched):
    from vllm.compilation import decorators

    model_load.unwatch_compile_fallback()
    decorators.logger.warning("%sCompiling model again due to a load failure from %s, reason: %s", "", "/p", "r")
    assert "compile_fallback" not in model_load._scratch and len(watched.seen) == 1
    assert watched.filter not in logging.getLogger(model_load.COMPILE_LOGGER).filters
