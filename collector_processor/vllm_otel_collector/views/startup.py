"""The engine-start progress display (rich): one row per phase of a start as :mod:`..analytics.startup` folds it.

Used live by ``vllm-otel demo`` (while it waits for vLLM's ``/health``) and by ``vllm-otel top`` (from
``/api/v1/startup``). Columns: phase, state (✓ done, ⠿ running, · pending, – no span: the start is ready
and no span reported this phase), seconds, detail (bytes loaded, KV cache
blocks/bytes, compile cache hit/miss, cold start). Sizes in decimal units (MB = 10⁶ bytes, GB = 10⁹).

A phase with nothing measured says "not measured" (seconds "–"): a phase without a span, a phase whose span carried
no figure, and a warm-up whose seconds are the compile's. The last one is the CPU case: torch.compile runs inside the
worker's "Warmup (CPU)" span, whose Duration the fold takes as the warm-up, and when vLLM reports no compilation time
the compile seconds fall back to that same span's elapsed time — one measurement, shown once (under compile).

:func:`phase_line` gives one phase as a plain line, for output that is not a terminal (no redraws: the demo prints a
line per phase as it completes, then the final table).
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


NOT_MEASURED = "not measured"
#: A warm-up within this many seconds of the compile is the same measurement (shown with one decimal).
SAME_SPAN_S = 0.05


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
        if p.get("cache_fallback_reason"):
            reason = p["cache_fallback_reason"]
            return f"cache failed to load, compiled again: {reason if len(reason) <= 60 else reason[:59] + '…'}"
        if hit is None:
            return "no compilation (eager)" if p.get("seconds") is None else "cache hit/miss unknown"
        return "compile cache hit" if hit else "compile cache miss (cold compile)"
    if p["phase"] == "ready" and p.get("cold_start_seconds") is not None:
        return f"cold start (process start → ready) {p['cold_start_seconds']:.1f} s"
    return ""


def _compile_seconds(start: dict[str, Any]) -> float | None:
    return next((p.get("seconds") for p in start["phases"] if p["phase"] == "compile" and p["state"] == "done"), None)


def cells(p: dict[str, Any], start: dict[str, Any], now: float) -> tuple[str, str]:
    """``(seconds, detail)`` of phase ``p`` of ``start`` as shown: ``"12.0"``, ``"3…"`` (running since the newest
    span ended), ``"–"`` with :data:`NOT_MEASURED` (or the phase's own note, e.g. eager mode) when nothing measured
    it."""
    if p["state"] == "running":
        return f"{max(now - start['updated'], 0):.0f}…", ""
    if p["state"] == "pending":
        return "", ""
    if p["state"] == "missing":
        return "–", NOT_MEASURED
    secs, detail = p.get("seconds"), _detail(p)
    compile_s = _compile_seconds(start)
    if p["phase"] == "warmup" and secs is not None and compile_s is not None and abs(secs - compile_s) < SAME_SPAN_S:
        return "–", f"{NOT_MEASURED} apart from compile (one {secs:.1f} s span)"
    if secs is None:
        return "–", detail or NOT_MEASURED
    return f"{secs:.1f}", detail


def phase_line(p: dict[str, Any], start: dict[str, Any], now: float) -> str:
    """One phase as a plain line: ``"engine start: weights done 4.0 s, 269 MB loaded"``; no markup."""
    secs, detail = cells(p, start, now)
    state = {"done": "done", "running": "running", "pending": "pending", "missing": "no span"}[p["state"]]
    figure = f" {secs} s" if secs not in ("", "–") and not secs.endswith("…") else ""
    return f"engine start: {LABELS[p['phase']]} {state}{figure}" + (f", {detail}" if detail else "")


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
        t.add_row(LABELS[p["phase"]], _STATE[p["state"]], *cells(p, start, now))
    t.caption = f"{start['service']} · trace {start['trace_id']}" if start.get("trace_id") else start["service"]
    return t
