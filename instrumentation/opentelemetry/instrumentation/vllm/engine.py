"""Hooks on vLLM's request funnel and engine construction (AsyncLLM for the OpenAI server, LLMEngine for ``LLM``).

Every request of either engine passes ``vllm.v1.engine.output_processor.OutputProcessor``: ``add_request`` (start),
``_update_stats_from_finished`` (normal finish, once per request, with vLLM's finish reason; no hook per engine
step), ``_update_streaming_request_state`` (end of a streaming-input request), ``abort_requests`` (abort / client
disconnect) and ``propagate_error`` (engine death). The OpenAI serving layer and ``LLM.chat`` only label the operation.
Each wrapper calls vLLM first and never lets a telemetry exception escape (see :func:`.utils.guarded`).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm import state, utils
from opentelemetry.instrumentation.vllm.patching import Patcher
from opentelemetry.instrumentation.vllm.requests import REQUEST_INFO, RequestInfo
from opentelemetry.instrumentation.vllm.utils import report_hook_error

OUTPUT_PROCESSOR = "vllm.v1.engine.output_processor"


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


# ---- OutputProcessor --------------------------------------------------------------------------------------------
def _add_request(wrapped, instance, args, kwargs):
    result = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None:
        tracker.on_add(instance, _arg(args, kwargs, 0, "request"), _arg(args, kwargs, 1, "prompt"),
                       _arg(args, kwargs, 2, "parent_req"))
    return result


def _update_stats_from_finished(wrapped, instance, args, kwargs):
    """vLLM calls this once per request that finished in ``process_outputs`` (after ``_finish_request``), with the
    finish reason it recorded: the request is finished here, so no hook runs per engine step."""
    result = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None:
        tracker.finished(_arg(args, kwargs, 0, "req_state"), _arg(args, kwargs, 1, "finish_reason"),
                         _arg(args, kwargs, 2, "iteration_stats"))
    return result


def _update_streaming_request_state(wrapped, instance, args, kwargs):
    """A streaming-input request whose engine side had already finished ends on its final (non-resumable) input:
    vLLM then calls ``_finish_request`` from here, outside ``process_outputs``."""
    req_state = _arg(args, kwargs, 0, "req_state")
    result = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None and req_state is not None and req_state.request_id not in instance.request_states:
        tracker.finish(req_state.request_id, sc.FINISH_STOP, time.time())
    return result


def _scan_prefill(process_outputs: Any) -> Any:
    """Instance-level wrapper of one engine's ``process_outputs``, installed only when a KV connector can bring
    external prompt tokens (their count arrives once, in the first output's ``PrefillStats``)."""

    def scan_then_process(*args, **kwargs):
        tracker = state.tracker()
        outputs = _arg(args, kwargs, 0, "engine_core_outputs")
        if tracker is not None and outputs:
            tracker.note_prefill(outputs)  # before vLLM's loop: a request finishing now is still tracked
        return process_outputs(*args, **kwargs)

    return scan_then_process


def _abort_requests(wrapped, instance, args, kwargs):
    aborted = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None and aborted:
        tracker.abort(aborted, time.time())
    return aborted


def _propagate_error(wrapped, instance, args, kwargs):
    result = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None:
        tracker.fail_all(instance, _arg(args, kwargs, 0, "e"))
    return result


def _run_engine(wrapped, instance, args, kwargs):
    """``LLM._run_engine`` (every offline ``generate``/``chat``/... call): when it returns, every request span of the
    call has ended and its metrics are recorded (the writer is drained), as with any OpenTelemetry instrumentation."""
    try:
        return wrapped(*args, **kwargs)
    finally:
        tracker = state.tracker()
        if tracker is not None:
            tracker.flush()


# ---- engine construction ----------------------------------------------------------------------------------------
def _served_model_name(vllm_config: Any) -> str:
    mc = getattr(vllm_config, "model_config", None)
    name = getattr(mc, "served_model_name", None) or getattr(mc, "model", "")
    if isinstance(name, (list, tuple)):
        name = name[0] if name else ""
    return str(name)


def _label_engine(instance: Any) -> None:
    try:
        instance.output_processor._otel_model = _served_model_name(instance.vllm_config)
        # Only a KV connector brings external prompt tokens; without one the local/external split needs no per-step
        # scan (all cached tokens are local prefix-cache hits), so no hook runs per engine step (#13).
        if getattr(instance.vllm_config, "kv_transfer_config", None) is not None:
            op = instance.output_processor
            op.process_outputs = _scan_prefill(op.process_outputs)
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
    # log_stats is turned on by the stat-logger plugin entry point (vllm.stat_logger_plugins), see stat_logger.py.
    _per_request_spec_stats(_arg(args, kwargs, 0, "vllm_config"))
    result = wrapped(*args, **kwargs)
    _label_engine(instance)
    return result


def _llm_engine_init(wrapped, instance, args, kwargs):
    """Force ``log_stats`` (per-request timestamps exist only with it, in the frontend and in EngineCore) and attach
    our stat logger; when the user had stats off, vLLM's default console/Prometheus loggers stay off."""
    user_log_stats = bool(_arg(args, kwargs, 2, "log_stats", False))
    _per_request_spec_stats(_arg(args, kwargs, 0, "vllm_config"))
    try:
        from opentelemetry.instrumentation.vllm.stat_logger import VLLMOtelStatLogger

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
    return result


# ---- operation labels ---------------------------------------------------------------------------------------------
def _labeler(operation: str):
    async def wrapper(wrapped, instance, args, kwargs):
        try:
            request = _arg(args, kwargs, 0, "request")
            # Not reset on return: a streaming response consumes the engine generator later in this request's task.
            REQUEST_INFO.set(RequestInfo(operation, bool(getattr(request, "stream", False)),
                                         getattr(request, "model", None)))
        except Exception as exc:  # noqa: BLE001
            report_hook_error("serving.label", exc)
        return await wrapped(*args, **kwargs)

    return wrapper


def _async_generate(wrapped, instance, args, kwargs):
    tracker = state.tracker()
    info = REQUEST_INFO.get()
    if tracker is not None and info is not None:
        try:
            rid = str(_arg(args, kwargs, 2, "request_id"))
            response_id = rid.rsplit("-", 1)[0] if info.operation == sc.OP_TEXT_COMPLETION else rid
            tracker.label(rid, RequestInfo(info.operation, info.stream, info.model, response_id,
                                           kwargs.get("trace_headers")))
        except Exception as exc:  # noqa: BLE001
            report_hook_error("serving.label", exc)
    return wrapped(*args, **kwargs)


def _llm_chat(wrapped, instance, args, kwargs):
    token = REQUEST_INFO.set(RequestInfo(sc.OP_CHAT, False, None))
    try:
        return wrapped(*args, **kwargs)
    finally:
        REQUEST_INFO.reset(token)


def install(patcher: Patcher) -> None:
    """Register every request-lifecycle patch (applied when the vLLM modules are imported)."""
    patcher.wrap(OUTPUT_PROCESSOR, "OutputProcessor.add_request", _add_request)
    patcher.wrap(OUTPUT_PROCESSOR, "OutputProcessor._update_stats_from_finished", _update_stats_from_finished)
    patcher.wrap(OUTPUT_PROCESSOR, "OutputProcessor._update_streaming_request_state", _update_streaming_request_state)
    patcher.wrap(OUTPUT_PROCESSOR, "OutputProcessor.abort_requests", _abort_requests)
    patcher.wrap(OUTPUT_PROCESSOR, "OutputProcessor.propagate_error", _propagate_error)
    patcher.wrap("vllm.v1.engine.async_llm", "AsyncLLM.__init__", _async_llm_init)
    patcher.wrap("vllm.v1.engine.async_llm", "AsyncLLM.generate", _async_generate)
    patcher.wrap("vllm.v1.engine.llm_engine", "LLMEngine.__init__", _llm_engine_init)
    patcher.wrap("vllm.entrypoints.openai.chat_completion.serving", "OpenAIServingChat.create_chat_completion",
                 _labeler(sc.OP_CHAT))
    patcher.wrap("vllm.entrypoints.openai.completion.serving", "OpenAIServingCompletion.create_completion",
                 _labeler(sc.OP_TEXT_COMPLETION))
    patcher.wrap("vllm.entrypoints.llm", "LLM.chat", _llm_chat)
    patcher.wrap("vllm.entrypoints.common.offline", "OfflineInferenceMixin._run_engine", _run_engine)
    if utils.bench_accounting_on():  # benchmark only: vLLM's own per-step costs beside ours, for scale
        patcher.wrap("vllm.v1.metrics.loggers", "PrometheusStatLogger.record", _bench_timed("vllm.prometheus_record"))
        patcher.wrap(OUTPUT_PROCESSOR, "OutputProcessor.process_outputs", _bench_timed("vllm.process_outputs"))


def _bench_timed(hook: str):
    """A wrapt wrapper that only accounts the wrapped vLLM method's thread CPU under ``hook`` (benchmark switch)."""
    return utils.timed(hook)(lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs))
