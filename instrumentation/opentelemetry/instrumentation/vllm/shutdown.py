"""The process's exit, bounded: whatever the OTLP backend does (refuses, accepts and never answers) and whatever the
telemetry child does (stopped, slow), telemetry work at exit ends within ``OTEL_INSTRUMENTATION_VLLM_SHUTDOWN_TIMEOUT``
seconds (default 5; :mod:`.settings`). What could not be exported by then is dropped, logged once and counted
(``vllm_otel.instrumentation.errors``, ``hook=shutdown``; lost child records under ``hook=export_process``).

:func:`bounded_exit` is registered with ``atexit`` by the instrumentor, after ``opentelemetry-instrument`` configured
the SDK, so it runs before the SDK's own exit handlers (LIFO) and does their work within the bound:

1. the flush chain (:mod:`.handoff.sink`): every finished request written or sent to the child (≤ 40 % of the bound);
2. the SDK providers of this process are shut down in the background (:func:`.providers.shutdown_providers`; their
   own ``atexit`` handlers are unregistered), while
3. the telemetry child is flushed, told the time left and closed; a child still there at the end is killed
   (:meth:`.handoff.link.ChildLink.close`);
4. what is still running at the deadline is abandoned: daemon threads end with the process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from opentelemetry.instrumentation.vllm import state
from opentelemetry.instrumentation.vllm.handoff.link import LinkHolder
from opentelemetry.instrumentation.vllm.providers import shutdown_providers
from opentelemetry.instrumentation.vllm.safety import count_hook_error, logger, report_hook_error

#: Share of the bound the request writer may take (step 1); the rest is for the child and the providers.
WRITER_SHARE = 0.4
#: Seconds before the deadline the providers' shutdown gives up, so that its verdict is in before the deadline.
_MARGIN_S = 0.2


class ShutdownIncomplete(Exception):
    """Telemetry work was cut off by the shutdown bound."""


def bounded_exit(timeout_s: float, link: LinkHolder, providers: Any = None) -> list[str]:
    """Flush and shut down this process's telemetry within ``timeout_s`` seconds (see the module doc): ``link``'s
    child and ``providers`` (default: this process's global SDK providers). Returns what did not finish
    (``"request writer"``, ``"telemetry child"``, provider class names); never raises."""
    start = time.monotonic()
    deadline = start + timeout_s
    state.begin_exit(deadline)
    cut: list[str] = []
    try:
        tracker = state.tracker()
        if tracker is not None and not tracker.flush(timeout_s * WRITER_SHARE):
            cut.append("request writer")
        unfinished: list[str] = []
        done = threading.Event()

        def shut() -> None:
            unfinished.extend(shutdown_providers(deadline - time.monotonic() - _MARGIN_S, providers))
            done.set()

        threading.Thread(target=shut, name="vllm-otel-shutdown", daemon=True).start()
        if link.close(max(deadline - time.monotonic(), 0.0)):
            cut.append("telemetry child")
        if not done.wait(max(deadline - time.monotonic(), 0.0)):
            unfinished.append("SDK providers")
        cut += unfinished
    except Exception as exc:  # noqa: BLE001 - exit must go on
        report_hook_error("shutdown", exc)
        cut.append(type(exc).__name__)
    if cut:
        logger.warning("vllm-otel: telemetry shutdown cut off after %.1f s (bound %.1f s, %s): %s; what they had not "
                       "exported is dropped", time.monotonic() - start, timeout_s,
                       "OTEL_INSTRUMENTATION_VLLM_SHUTDOWN_TIMEOUT", ", ".join(cut))
        count_hook_error("shutdown", ShutdownIncomplete(", ".join(cut)))
    return cut
