"""Hooks on engine construction (``AsyncLLM``, ``LLMEngine``) and the offline ``LLM``'s run loop: label the output
processor with the served model name, ask for per-request spec-decode stats, attach our stat logger to the offline
engine (the server's comes from the ``vllm.stat_logger_plugins`` entry point) and then choose the engine metric
source (:func:`..engine.source.choose`: vLLM's registry takes our stat logger out of the loop) and the readers of the
engine state at a request's arrival (:func:`..engine.arrival.attach`), and drain the request writer when an
offline call returns (its request spans have ended then).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.vllm import compat, state
from opentelemetry.instrumentation.vllm.engine import arrival
from opentelemetry.instrumentation.vllm.engine.source import choose
from opentelemetry.instrumentation.vllm.engine.table import served_model_name
from opentelemetry.instrumentation.vllm.hooks.output_processor import scan_prefill
from opentelemetry.instrumentation.vllm.hooks.patcher import Patcher, arg
from opentelemetry.instrumentation.vllm.safety import report_hook_error


def _run_engine(wrapped, instance, args, kwargs):
    """``LLM._run_engine`` (every offline ``generate``/``chat``/... call): when it returns, every request span of the
    call has ended and its metrics are recorded (the writer is drained), as with any OpenTelemetry instrumentation."""
    try:
        return wrapped(*args, **kwargs)
    finally:
        tracker = state.tracker()
        if tracker is not None:
            tracker.flush()


def _label_engine(instance: Any) -> None:
    try:
        instance.output_processor._otel_model = served_model_name(getattr(instance.vllm_config, "model_config", None))
        # Only a KV connector brings external prompt tokens; without one the local/external split needs no per-step
        # scan (all cached tokens are local prefix-cache hits), so no hook runs per engine step (#13).
        if getattr(instance.vllm_config, "kv_transfer_config", None) is not None:
            op = instance.output_processor
            op.process_outputs = scan_prefill(op.process_outputs)
    except Exception as exc:  # noqa: BLE001
        report_hook_error("engine.init", exc)


def _per_request_spec_stats(vllm_config: Any) -> None:
    """With speculative decoding on, ask the scheduler for per-request spec-decode counts ("summary" level: drafted
    tokens and an accepted-count histogram per request, sent once on its final output) unless the user chose one."""
    try:
        obs = getattr(vllm_config, "observability_config", None)
        if (getattr(vllm_config, "speculative_config", None) is not None and obs is not None
                and getattr(obs, "per_request_spec_decode_metrics", None) == "none"):
            obs.per_request_spec_decode_metrics = "summary"
    except Exception as exc:  # noqa: BLE001
        report_hook_error("engine.init", exc)


def _async_llm_init(wrapped, instance, args, kwargs):
    # log_stats is turned on by the stat-logger plugin entry point (vllm.stat_logger_plugins): engine/stat_logger.py.
    _per_request_spec_stats(arg(args, kwargs, 0, "vllm_config"))
    result = wrapped(*args, **kwargs)
    _label_engine(instance)
    client_index = arg(args, kwargs, 11, "client_index", 0)  # position as in vLLM 0.32 (keyword in from_vllm_config)
    choose(instance, client_index if isinstance(client_index, int) else 0)
    arrival.attach(instance)  # after the choice: the logger list is final
    return result


def _llm_engine_init(wrapped, instance, args, kwargs):
    """Force ``log_stats`` (per-request timestamps exist only with it, in the frontend and in EngineCore) and attach
    our stat logger; when the user had stats off, vLLM's default console/Prometheus loggers stay off."""
    user_log_stats = bool(arg(args, kwargs, 2, "log_stats", False))
    _per_request_spec_stats(arg(args, kwargs, 0, "vllm_config"))
    try:
        from opentelemetry.instrumentation.vllm.engine.stat_logger import VLLMOtelStatLogger

        args, kwargs = list(args), dict(kwargs)
        if len(args) > 2:
            args[2] = True
        else:
            kwargs["log_stats"] = True
        loggers = list(kwargs.get("stat_loggers") or ([] if len(args) <= 5 else args[5] or []))
        if VLLMOtelStatLogger not in loggers:
            loggers.append(VLLMOtelStatLogger)
        if len(args) > 5:
            args[5] = loggers
        else:
            kwargs["stat_loggers"] = loggers
    except Exception as exc:  # noqa: BLE001
        report_hook_error("engine.init", exc)
        return wrapped(*args, **kwargs)
    result = wrapped(*args, **kwargs)
    _label_engine(instance)
    if not user_log_stats:
        try:
            from vllm.v1.metrics.loggers import StatLoggerManager

            instance.logger_manager = StatLoggerManager(vllm_config=instance.vllm_config, custom_stat_loggers=loggers,
                                                        enable_default_loggers=False)
        except Exception as exc:  # noqa: BLE001
            report_hook_error("engine.init", exc)
    choose(instance)
    arrival.attach(instance)
    return result


def install(patcher: Patcher) -> None:
    """Register the engine-construction and offline-run patches."""
    patcher.wrap("vllm.v1.engine.async_llm", "AsyncLLM.__init__", _async_llm_init, compat.ENGINE_SETUP)
    patcher.wrap("vllm.v1.engine.llm_engine", "LLMEngine.__init__", _llm_engine_init, compat.ENGINE_SETUP)
    # the offline run loop moved in vllm 0.32 (compat.py: the first spelling this vLLM has is imported, the other never)
    for module in ("vllm.entrypoints.common.offline", "vllm.entrypoints.offline_utils"):
        patcher.wrap(module, "OfflineInferenceMixin._run_engine", _run_engine, compat.OFFLINE_FLUSH)
