"""Hooks on vLLM's request funnel: every request of either engine (``AsyncLLM`` for the OpenAI server, ``LLMEngine``
for ``LLM``) passes ``vllm.v1.engine.output_processor.OutputProcessor``: ``add_request`` (start),
``_update_stats_from_finished`` (normal finish, once per request, with vLLM's finish reason; no hook per engine
step), ``_update_streaming_request_state`` (end of a streaming-input request), ``abort_requests`` (abort / client
disconnect) and ``propagate_error`` (engine death). Each wrapper calls vLLM first and hands the facts to the request
tracker (:mod:`..request.tracker`), whose methods never let a telemetry exception escape.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.instrumentation.vllm import compat, state
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.hooks.patcher import Patcher, arg

MODULE = "vllm.v1.engine.output_processor"


def _add_request(wrapped, instance, args, kwargs):
    result = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None:
        tracker.on_add(instance, arg(args, kwargs, 0, "request"), arg(args, kwargs, 1, "prompt"),
                       arg(args, kwargs, 2, "parent_req"))
    return result


def _update_stats_from_finished(wrapped, instance, args, kwargs):
    """vLLM calls this once per request that finished in ``process_outputs`` (after ``_finish_request``), with the
    finish reason it recorded: the request is finished here, so no hook runs per engine step."""
    result = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None:
        tracker.finished(arg(args, kwargs, 0, "req_state"), arg(args, kwargs, 1, "finish_reason"),
                         arg(args, kwargs, 2, "iteration_stats"))
    return result


def _update_streaming_request_state(wrapped, instance, args, kwargs):
    """A streaming-input request whose engine side had already finished ends on its final (non-resumable) input:
    vLLM then calls ``_finish_request`` from here, outside ``process_outputs``."""
    req_state = arg(args, kwargs, 0, "req_state")
    result = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None and req_state is not None and req_state.request_id not in instance.request_states:
        tracker.finish(req_state.request_id, sc.FINISH_STOP, time.time())
    return result


def _finish_request(wrapped, instance, args, kwargs):
    """vLLM >= 0.33 (compat.REQUEST_ERRORS): ``_finish_request`` also ends a request rejected with an error output,
    without ``_update_stats_from_finished``. The tracker notes the release; a normal finish follows within the same
    call, else the sweeper ends it as an error at this time."""
    req_state = arg(args, kwargs, 0, "req_state")
    result = wrapped(*args, **kwargs)
    tracker = state.tracker()
    if tracker is not None and req_state is not None:
        tracker.released(req_state.request_id, time.time())
    return result


def scan_prefill(process_outputs: Any) -> Any:
    """Instance-level wrapper of one engine's ``process_outputs``, installed only when a KV connector can bring
    external prompt tokens (their count arrives once, in the first output's ``PrefillStats``)."""

    def scan_then_process(*args, **kwargs):
        tracker = state.tracker()
        outputs = arg(args, kwargs, 0, "engine_core_outputs")
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
        tracker.fail_all(instance, arg(args, kwargs, 0, "e"))
    return result


def install(patcher: Patcher) -> None:
    """Register the request-lifecycle patches (applied when vLLM's output processor is imported)."""
    patcher.wrap(MODULE, "OutputProcessor.add_request", _add_request, compat.REQUEST_SPANS)
    patcher.wrap(MODULE, "OutputProcessor._update_stats_from_finished", _update_stats_from_finished,
                 compat.REQUEST_SPANS)
    patcher.wrap(MODULE, "OutputProcessor.abort_requests", _abort_requests, compat.REQUEST_SPANS)
    patcher.wrap(MODULE, "OutputProcessor.propagate_error", _propagate_error, compat.REQUEST_SPANS)
    patcher.wrap(MODULE, "OutputProcessor._update_streaming_request_state", _update_streaming_request_state,
                 compat.STREAMING_INPUT)
    patcher.wrap(MODULE, "OutputProcessor._finish_request", _finish_request, compat.REQUEST_ERRORS)
