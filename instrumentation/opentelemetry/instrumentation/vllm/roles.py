"""Which process of a vLLM deployment this is, from how the interpreter was started (``sys.orig_argv``), so that each
process does only what it has something for:

- ``frontend`` — the API server or a script using the offline ``LLM``: request spans, metrics, the telemetry child.
- ``engine`` — a process vLLM spawned through ``multiprocessing`` (EngineCore, workers: ``--multiprocessing-fork``
  on the command line): model-load spans only; no process/GPU observers (the frontend's side observes the whole
  process tree, :mod:`.host_metrics`), so its metric reader has nothing to export and its exit waits for no export.
- ``resource_tracker`` — ``multiprocessing``'s resource tracker, which ``opentelemetry-instrument`` also
  bootstraps: nothing of vLLM runs there; the instrumentor shuts the SDK providers it was given down at once (no
  exporter threads, no export) and patches nothing.

A forked process (``VLLM_WORKER_MULTIPROC_METHOD=fork``) keeps its parent's command line and so its role; the SDK
and the instrumentation are inherited there, not started again.
"""

from __future__ import annotations

import sys

FRONTEND, ENGINE, RESOURCE_TRACKER = "frontend", "engine", "resource_tracker"


def process_role(argv: list[str] | None = None) -> str:
    """The role of the process started with ``argv`` (default ``sys.orig_argv``, the interpreter's own command
    line): one of :data:`FRONTEND`, :data:`ENGINE`, :data:`RESOURCE_TRACKER`."""
    args = list(getattr(sys, "orig_argv", sys.argv) if argv is None else argv)
    code = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "-c"), "")
    if "multiprocessing.resource_tracker" in code:
        return RESOURCE_TRACKER
    if "--multiprocessing-fork" in args or "multiprocessing.spawn" in code:
        return ENGINE
    return FRONTEND
