"""Model-load telemetry: enrich vLLM's own startup spans, or create the same tree where vLLM has none.

vLLM ≥0.32 wraps its startup functions with ``vllm.tracing.instrument`` ("Overall Loading" in the API server,
"Prepare model" in EngineCore, "Load model" / "Load weights" where the worker runs). We re-decorate the *inner*
function with vLLM's own decorator around our wrapper, so our code runs inside vLLM's span and writes attributes
before it ends — one span per step, never a duplicate. On versions whose functions carry no ``__wrapped__`` we open
spans ourselves (root named ``vllm.model_load``). Attributes (all in :mod:`.semconv`, ``LOAD_*``):

- "Load model": model name/path, dtype, quantization, TP/PP size, device, memory before/after/peak (bytes: process
  RSS on CPU, ``torch.cuda`` allocator stats on GPU), download seconds when weights were fetched.
- "Load weights": weights bytes (sum of the weight files' sizes on disk) and load seconds.
- "Prepare model": KV cache blocks and bytes, torch.compile seconds and cache hit/miss (vLLM's compilation counters),
  warmup seconds, CUDA-graph capture seconds (GPU only).
- root: cold start seconds (process start → engine ready) and total load seconds.
- compile-cache fallback (where cache hit/miss is set): when vLLM could not load its torch.compile AOT artifact and
  compiled again, the artifact's path and vLLM's reason (:class:`CompileFallbackFilter`).
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import time
from typing import Any, Callable

from opentelemetry import trace

from opentelemetry.instrumentation.vllm import compat
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.engine.table import served_model_name
from opentelemetry.instrumentation.vllm.hooks.patcher import Patcher
from opentelemetry.instrumentation.vllm.safety import report_hook_error

_TRACER_NAME = "opentelemetry.instrumentation.vllm.model_load"
#: Measurements handed from inner calls (weight-file discovery, warmup, graph capture) to the enclosing span.
_scratch: dict[str, Any] = {}


def _memory() -> tuple[int, int]:
    """(current, peak) bytes: CUDA allocator when a GPU is in use, else process RSS and max RSS (Linux KiB→bytes)."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.memory_allocated()), int(torch.cuda.max_memory_allocated())
    except Exception:  # noqa: BLE001
        pass
    import psutil

    rss = psutil.Process(os.getpid()).memory_info().rss
    return int(rss), max(int(rss), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _step(native_name: str, fallback_name: str, before: Callable[..., Any] | None,
          after: Callable[..., None]) -> Callable[[Any], Any]:
    """Factory for :meth:`Patcher.replace`: ``before(args, kwargs) -> token`` and
    ``after(span, token, result, args, kwargs)`` run inside the step's span; both are guarded."""

    def factory(original: Any) -> Any:
        is_static = isinstance(original, staticmethod)
        func = original.__func__ if is_static else original
        inner = getattr(func, "__wrapped__", None)
        target = inner if inner is not None else func

        @functools.wraps(target)
        def enriched(*args: Any, **kwargs: Any) -> Any:
            token = None
            try:
                token = before(args, kwargs) if before is not None else time.perf_counter()
            except Exception as exc:  # noqa: BLE001
                report_hook_error(f"model_load.{native_name}", exc)
            result = target(*args, **kwargs)
            try:
                after(trace.get_current_span(), token, result, args, kwargs)
            except Exception as exc:  # noqa: BLE001
                report_hook_error(f"model_load.{native_name}", exc)
            return result

        if inner is not None:
            from vllm.tracing import instrument

            new = instrument(span_name=native_name)(enriched)
        else:
            @functools.wraps(target)
            def new(*args: Any, **kwargs: Any) -> Any:
                with trace.get_tracer(_TRACER_NAME).start_as_current_span(fallback_name):
                    return enriched(*args, **kwargs)
        return staticmethod(new) if is_static else new

    return factory


# ---- "Load model" -----------------------------------------------------------------------------------------------
def _load_model_before(args: tuple, kwargs: dict) -> tuple[float, int]:
    _scratch.pop("download_seconds", None)
    return time.perf_counter(), _memory()[0]


def _load_model_after(span: Any, token: Any, result: Any, args: tuple, kwargs: dict) -> None:
    vllm_config = args[1] if len(args) > 1 else kwargs["vllm_config"]
    mc = args[2] if len(args) > 2 else kwargs["model_config"]
    _, mem_before = token
    mem_after, peak = _memory()
    span.set_attributes(model_attributes(vllm_config, mc))
    span.set_attributes({sc.LOAD_MEMORY_BEFORE: mem_before, sc.LOAD_MEMORY_AFTER: mem_after,
                         sc.LOAD_MEMORY_PEAK: peak})
    if "download_seconds" in _scratch:
        span.set_attribute(sc.LOAD_DOWNLOAD_SECONDS, _scratch.pop("download_seconds"))


def model_attributes(vllm_config: Any, mc: Any) -> dict[str, Any]:
    """Static description of the model being loaded (name, path, dtype, quantization, parallelism, device)."""
    pc = vllm_config.parallel_config
    return {
        sc.LOAD_MODEL_NAME: served_model_name(mc),
        sc.LOAD_MODEL_PATH: str(mc.model),
        sc.LOAD_DTYPE: str(mc.dtype).removeprefix("torch."),
        sc.LOAD_QUANTIZATION: str(mc.quantization or "none"),
        sc.LOAD_TP_SIZE: int(pc.tensor_parallel_size),
        sc.LOAD_PP_SIZE: int(pc.pipeline_parallel_size),
        sc.LOAD_DEVICE: str(vllm_config.device_config.device_type),
    }


# ---- "Load weights" ---------------------------------------------------------------------------------------------
def _prepare_weights(wrapped, instance, args, kwargs):
    t0 = time.perf_counter()
    result = wrapped(*args, **kwargs)
    try:
        path = args[0] if args else kwargs.get("model_name_or_path", "")
        _scratch["weight_files"] = list(result[1])
        if not os.path.isdir(str(path)):  # weights came from a hub download (or its cache)
            _scratch["download_seconds"] = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001
        report_hook_error("model_load.prepare_weights", exc)
    return result


def _load_weights_before(args: tuple, kwargs: dict) -> float:
    _scratch.pop("weight_files", None)
    return time.perf_counter()


def _load_weights_after(span: Any, t0: float, result: Any, args: tuple, kwargs: dict) -> None:
    span.set_attribute(sc.LOAD_WEIGHTS_SECONDS, time.perf_counter() - t0)
    files = _scratch.pop("weight_files", None)
    if files:
        span.set_attribute(sc.LOAD_WEIGHTS_BYTES, sum(os.path.getsize(f) for f in files if os.path.exists(f)))


# ---- "Prepare model" (KV cache, compile, warmup) ------------------------------------------------------------------
def _elapsed_into(key: str):
    """A wrapper adding the wrapped call's wall seconds to ``_scratch[key]`` (read by the enclosing step's span)."""

    def wrapper(wrapped, instance, args, kwargs):
        t0 = time.perf_counter()
        try:
            return wrapped(*args, **kwargs)
        finally:
            _scratch[key] = _scratch.get(key, 0.0) + time.perf_counter() - t0

    return wrapper


def _compile_counters() -> tuple[int, int]:
    """(compilations, cache loads) from vLLM's process-global compilation counter."""
    from vllm.compilation.counter import compilation_counter as cc

    compiles = cc.num_inductor_compiles + cc.num_aot_compiles + cc.num_backend_compilations
    loads = cc.num_compiled_artifacts_loaded + cc.num_aot_artifacts_loaded
    return compiles, loads


def _prepare_before(args: tuple, kwargs: dict) -> tuple[float, tuple[int, int]]:
    _scratch.pop("warmup_seconds", None)
    _scratch.pop("compile_fallback", None)
    _scratch.pop("cuda_graph_seconds", None)
    return time.perf_counter(), _compile_counters()


# ---- compile-cache fallback --------------------------------------------------------------------------------------
#: vLLM's logger of the AOT-artifact load (``vllm/compilation/decorators.py``, ``_try_load_aot_compiled_fn``).
COMPILE_LOGGER = "vllm.compilation.decorators"
#: What every release's message says (0.29–0.31: ``"Compiling model again due to a load failure from %s, reason:
#: %s"``; 0.32 adds a ``"%s"`` tag prefix): the path and the reason are its last two arguments.
COMPILE_FALLBACK_MARK = "Compiling model again due to a load failure from"
#: Longest reason kept (vLLM's reason is ``str(exception)``: a traceback-sized message is cut here).
MAX_REASON_CHARS = 1024


class CompileFallbackFilter(logging.Filter):
    """A filter on vLLM's compilation logger that never drops a record: vLLM's warning that it could not load its
    compiled artifact and compiles again is the only place its reason is observable (the exception is caught inside
    vLLM), so the record's arguments — the artifact's path and the reason, verbatim — are kept for the span that
    carries the compile cache hit/miss (``_scratch["compile_fallback"]``). Detected by the message's text, not a
    version; a release that words it differently leaves the attributes absent. Needs vLLM's log level at WARNING or
    below (the default, ``VLLM_LOGGING_LEVEL=INFO``): a logger that discards warnings runs no filter."""

    def __init__(self) -> None:
        super().__init__(name="vllm-otel.compile-fallback")
        self.active = True

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if self.active and isinstance(record.msg, str) and COMPILE_FALLBACK_MARK in record.msg:
                args = record.args if isinstance(record.args, tuple) else ()
                if len(args) >= 2:
                    _scratch["compile_fallback"] = (str(args[-2]), str(args[-1])[:MAX_REASON_CHARS])
        except Exception as exc:  # noqa: BLE001 - never into vLLM's logging
            report_hook_error("model_load.compile_fallback", exc)
        return True


_fallback_filter: CompileFallbackFilter | None = None


def watch_compile_fallback() -> CompileFallbackFilter:
    """Attach the process's :class:`CompileFallbackFilter` to vLLM's compilation logger (once; the logger object is
    the one vLLM's ``init_logger`` returns later, importing nothing of vLLM here)."""
    global _fallback_filter
    if _fallback_filter is None:
        _fallback_filter = CompileFallbackFilter()
        logging.getLogger(COMPILE_LOGGER).addFilter(_fallback_filter)
    _fallback_filter.active = True
    return _fallback_filter


def unwatch_compile_fallback() -> None:
    global _fallback_filter
    if _fallback_filter is not None:
        logging.getLogger(COMPILE_LOGGER).removeFilter(_fallback_filter)
        _fallback_filter.active = False
        _fallback_filter = None


def _compile_cache_attrs(span: Any, hit: bool) -> None:
    """``vllm.compile.cache_hit`` and, after a fallback in this process, where vLLM looked and why it compiled again
    (cache_hit is then false)."""
    fallback = _scratch.get("compile_fallback")
    if fallback is not None:
        span.set_attributes({sc.LOAD_COMPILE_CACHE_PATH: fallback[0],
                             sc.LOAD_COMPILE_CACHE_FALLBACK_REASON: fallback[1]})
        hit = False
    span.set_attribute(sc.LOAD_COMPILE_CACHE_HIT, hit)


def _prepare_after(span: Any, token: Any, kv_cache_config: Any, args: tuple, kwargs: dict) -> None:
    _, (compiles0, loads0) = token
    compiles1, loads1 = _compile_counters()
    if kv_cache_config is not None:
        span.set_attribute(sc.LOAD_KV_BLOCKS, int(kv_cache_config.num_blocks))
        tensors = getattr(kv_cache_config, "kv_cache_tensors", None) or []
        span.set_attribute(sc.LOAD_KV_BYTES, int(sum(t.size for t in tensors)))
    vllm_config = args[1] if len(args) > 1 else kwargs.get("vllm_config")
    compile_time = getattr(getattr(vllm_config, "compilation_config", None), "compilation_time", 0.0) or 0.0
    if compile_time:
        span.set_attribute(sc.LOAD_COMPILE_SECONDS, float(compile_time))
    # The counters are per process: they only tell hit/miss when compilation ran in this one (uniproc executor).
    if compiles1 > compiles0 or loads1 > loads0:
        _compile_cache_attrs(span, loads1 > loads0 and compiles1 == compiles0)
    _scratch.pop("compile_fallback", None)
    if "warmup_seconds" in _scratch:
        span.set_attribute(sc.LOAD_WARMUP_SECONDS, _scratch.pop("warmup_seconds"))
    if "cuda_graph_seconds" in _scratch:
        span.set_attribute(sc.LOAD_CUDA_GRAPH_SECONDS, _scratch.pop("cuda_graph_seconds"))


# ---- worker-side compilation (CPU: torch.compile runs in the worker's "Warmup (CPU)") -------------------------------
def _warmup_before(args: tuple, kwargs: dict) -> tuple[float, tuple[int, int]]:
    return time.perf_counter(), _compile_counters()


def _warmup_after(span: Any, token: Any, result: Any, args: tuple, kwargs: dict) -> None:
    """Compile seconds and cache hit/miss from the worker process, where the compilation counters move."""
    t0, (compiles0, loads0) = token
    compiles1, loads1 = _compile_counters()
    if compiles1 == compiles0 and loads1 == loads0:
        return  # nothing compiled or loaded here (eager mode)
    runner = args[0] if args else None
    config = getattr(getattr(runner, "vllm_config", None), "compilation_config", None)
    compile_s = float(getattr(config, "compilation_time", 0.0) or 0.0) or (time.perf_counter() - t0)
    span.set_attribute(sc.LOAD_COMPILE_SECONDS, compile_s)
    _compile_cache_attrs(span, loads1 > loads0 and compiles1 == compiles0)


# ---- root ("Overall Loading") ---------------------------------------------------------------------------------------
def _root_after(span: Any, t0: float, result: Any, args: tuple, kwargs: dict) -> None:
    import psutil

    now = time.time()
    span.set_attribute(sc.LOAD_TOTAL_SECONDS, time.perf_counter() - t0)
    span.set_attribute(sc.LOAD_COLD_START_SECONDS, now - psutil.Process(os.getpid()).create_time())
    vllm_config = args[0] if args else kwargs.get("vllm_config")
    if vllm_config is not None:
        span.set_attributes(model_attributes(vllm_config, vllm_config.model_config))


def install(patcher: Patcher) -> None:
    """Register the model-load patches (applied when each vLLM module is imported, in whichever process)."""
    f = compat.MODEL_LOAD
    watch_compile_fallback()  # a log filter, no patch: vLLM's reason is only in its warning
    patcher.replace("vllm.v1.engine.core_client", "EngineCoreClient.make_async_mp_client",
                    _step(sc.NATIVE_SPAN_MODEL_LOAD_ROOT, sc.SPAN_MODEL_LOAD, None, _root_after), f)
    patcher.replace("vllm.model_executor.model_loader.base_loader", "BaseModelLoader.load_model",
                    _step("Load model", "Load model", _load_model_before, _load_model_after), f)
    patcher.replace("vllm.model_executor.model_loader.default_loader", "DefaultModelLoader.load_weights",
                    _step("Load weights", "Load weights", _load_weights_before, _load_weights_after), f)
    patcher.wrap("vllm.model_executor.model_loader.default_loader", "DefaultModelLoader._prepare_weights",
                 _prepare_weights, f)
    patcher.replace("vllm.v1.engine.core", "EngineCore._initialize_kv_caches",
                    _step("Prepare model", "Prepare model", _prepare_before, _prepare_after), f)
    patcher.wrap("vllm.v1.executor.abstract", "Executor.compile_or_warm_up_model", _elapsed_into("warmup_seconds"), f)
    patcher.replace("vllm.v1.worker.cpu_model_runner", "CPUModelRunner.warming_up_model",
                    _step("Warmup (CPU)", "Warmup (CPU)", _warmup_before, _warmup_after), f)
    patcher.wrap("vllm.v1.worker.gpu_model_runner", "GPUModelRunner.capture_model", _elapsed_into("cuda_graph_seconds"),
                 f)
