"""Every patch of the instrumentation, listed in one place (:func:`install`); each room registers its own.

Patches are applied lazily (:class:`.patcher.Patcher`: wrapt post-import hooks), so a process that never imports a
vLLM module pays nothing for it, and a vLLM version without a hooked surface is "not instrumented, one warning"
(the patch is skipped and counted), never an exception in vLLM.
"""

from __future__ import annotations

from opentelemetry.instrumentation.vllm.hooks import engines, model_load, output_processor, sdk_flush, serving
from opentelemetry.instrumentation.vllm.hooks.patcher import Patcher
from opentelemetry.instrumentation.vllm.safety import BENCH_ON, timed

__all__ = ["Patcher", "install"]


def install(patcher: Patcher) -> None:
    """Register every patch: the request funnel, engine construction, operation labels, the SDK flush contract and
    model-load spans; with the benchmark switch, vLLM's own per-step methods timed for scale."""
    output_processor.install(patcher)
    engines.install(patcher)
    serving.install(patcher)
    sdk_flush.install(patcher)
    model_load.install(patcher)
    if BENCH_ON:  # benchmark only: vLLM's own per-step costs beside ours, for scale
        patcher.wrap("vllm.v1.metrics.loggers", "PrometheusStatLogger.record", _bench_timed("vllm.prometheus_record"))
        patcher.wrap(output_processor.MODULE, "OutputProcessor.process_outputs", _bench_timed("vllm.process_outputs"))


def _bench_timed(hook: str):
    """A wrapt wrapper that only accounts the wrapped vLLM method's thread CPU under ``hook`` (benchmark switch)."""
    return timed(hook)(lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs))
