"""Operation labels from the serving layer: the OpenAI chat/completion handlers and ``LLM.chat`` tell the request
tracker the GenAI operation, ``stream`` and the model name the client asked for (a context variable, and a label by
request id for ``AsyncLLM.generate``, whose generator vLLM may consume in another task).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm import compat, state
from opentelemetry.instrumentation.vllm.hooks.patcher import Patcher, arg
from opentelemetry.instrumentation.vllm.request.facts import REQUEST_INFO, RequestInfo
from opentelemetry.instrumentation.vllm.safety import report_hook_error


def _w3c_headers(raw_request: Any) -> dict[str, str] | None:
    """The W3C trace headers of the HTTP request (``traceparent``, ``tracestate``), None without a ``traceparent``.
    vLLM < 0.32 hands them to the engine only with its native tracing on (compat.py); read here, they reach the
    request span on every version."""
    headers = getattr(raw_request, "headers", None)
    if headers is None:
        return None
    parent = headers.get("traceparent")
    if not parent:
        return None
    state = headers.get("tracestate")
    return {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}


def _labeler(operation: str):
    async def wrapper(wrapped, instance, args, kwargs):
        try:
            request = arg(args, kwargs, 0, "request")
            # Not reset on return: a streaming response consumes the engine generator later in this request's task.
            REQUEST_INFO.set(RequestInfo(operation, bool(getattr(request, "stream", False)),
                                         getattr(request, "model", None),
                                         trace_headers=_w3c_headers(arg(args, kwargs, 1, "raw_request"))))
        except Exception as exc:  # noqa: BLE001
            report_hook_error("serving.label", exc)
        return await wrapped(*args, **kwargs)

    return wrapper


def _async_generate(wrapped, instance, args, kwargs):
    tracker = state.tracker()
    info = REQUEST_INFO.get()
    if tracker is not None and info is not None:
        try:
            rid = str(arg(args, kwargs, 2, "request_id"))
            response_id = rid.rsplit("-", 1)[0] if info.operation == sc.OP_TEXT_COMPLETION else rid
            tracker.label(rid, RequestInfo(info.operation, info.stream, info.model, response_id,
                                           kwargs.get("trace_headers") or info.trace_headers))
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
    """Register the operation-label patches."""
    labels = compat.OPERATION_LABELS
    patcher.wrap("vllm.v1.engine.async_llm", "AsyncLLM.generate", _async_generate, labels)
    patcher.wrap("vllm.entrypoints.openai.chat_completion.serving", "OpenAIServingChat.create_chat_completion",
                 _labeler(sc.OP_CHAT), labels)
    patcher.wrap("vllm.entrypoints.openai.completion.serving", "OpenAIServingCompletion.create_completion",
                 _labeler(sc.OP_TEXT_COMPLETION), labels)
    patcher.wrap("vllm.entrypoints.llm", "LLM.chat", _llm_chat, labels)
