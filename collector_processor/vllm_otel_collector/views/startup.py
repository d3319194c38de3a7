"""The engine-start progress display (rich): one row per phase of a start as :mod:`..analytics.startup` folds it.

Used live by ``vllm-otel demo`` (while it waits for vLLM's ``/health``) and by ``vllm-otel top`` (from
``/api/v1/startup``). Columns: phase, state (✓ done, ⠿ running, · pending, – no span: the start is ready
and no span reported this phase), seconds, detail (bytes loaded, KV cache
blocks/bytes, compile cache hit/miss, cold start). Sizes in decimal units (MB = 10⁶ bytes, GB = 10⁹).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

LABELS = {"weights": "weights", "kv_cache": "KV cache", "compile": "compile", "warmup": "warm-up", "ready": "ready"}
_STATE = {"done": "[green]✓ done[/]", "running": "[yellow]⠿ running[/]", "pending": "[dim]· pending[/]",
          "missing": "[dim]– no span[/]"}


def size(n: int | None) -> str:
    """Bytes as ``"270 MB"`` / ``"1.07 GB"`` (decimal units); ``""`` for None."""
    if n is None:
        return ""
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _detail(p: dict[str, Any]) -> str:
    if p["state"] != "done":
        return ""
    if p["phase"] == "weights":
        return f"{size(p['bytes'])} loaded" if p.get("bytes") is not None else ""
    if p["phase"] == "kv_cache":
        parts = [f"{p['blocks']} blocks" if p.get("blocks") is not None else "", size(p.get("bytes"))]
        return ", ".join(x for x in parts if x)
    if p["phase"] == "compile":
        hit = p.get("cache_hit")
        if hit is None:
            return "no compilation (eager)" if p.get("seconds") is None else "cache hit/miss unknown"
        return "compile cache hit" if hit else "compile cache miss (cold compile)"
    if p["phase"] == "ready" and p.get("cold_start_seconds") is not None:
        return f"cold start (process start → ready) {p['cold_start_seconds']:.1f} s"
    return ""


def render_start(start: dict[str, Any] | None, now: float, waited: float | None = None) -> Table:
    """The progress table for one engine start (:func:`~vllm_otel_collector.analytics.startup.fold_start` shape).

    ``now`` (unix s) gives the elapsed time of an unfinished start and of its running phase (since the previous
    phase's end: the start, or the newest span's end); ``waited`` (s) is shown when no span has arrived yet
    (``start`` None).
    """
    if start is None:
        t = Table(title="engine start — waiting for the first model-load span", min_width=64)
        for col in ("phase", "state", "seconds", "detail"):
            t.add_column(col, no_wrap=True)
        for name in ("weights", "kv_cache", "compile", "warmup", "ready"):
            t.add_row(LABELS[name], _STATE["running" if name == "weights" else "pending"], "", "")
        if waited is not None:
            t.caption = f"waiting {waited:.0f} s"
        return t
    if start["ready"]:
        title = f"engine start — {start['model']} ready in {start['load_seconds']:.1f} s"
    else:
        title = f"engine start — {start['model']} loading, {max(now - start['started'], 0):.0f} s"
    t = Table(title=title, min_width=64)
    for col, justify in (("phase", "left"), ("state", "left"), ("seconds", "right"), ("detail", "left")):
        t.add_column(col, justify=justify, no_wrap=True)
    for p in start["phases"]:
        if p["state"] == "running":
            secs = f"{max(now - start['updated'], 0):.0f}…"
        else:
            secs = "" if p.get("seconds") is None else f"{p['seconds']:.1f}"
        t.add_row(LABELS[p["phase"]], _STATE[p["state"]], secs, _detail(p))
    t.caption = f"{start['service']} · trace {start['trace_id']}" if start.get("trace_id") else start["service"]
    return t
