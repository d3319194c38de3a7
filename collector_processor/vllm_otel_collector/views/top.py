"""``vllm-otel top``: a live terminal view of serving health, refreshed from the collector's read API — or, with
``--clickhouse``, from the same route handlers run on ClickHouse directly (:class:`StoreSource`: a stock-pipeline
database that no collector serves).

Sources (all on the read API, default ``http://127.0.0.1:4319``):
- ``/api/v1/stats?mode=current&window=W`` — per (service, model, operation) window statistics; request rate =
  requests / W, tokens/s = output tokens / W, p95 TTFT/TPOT (seconds, exact over raw rows); goodput (requests that
  finished ok within their model's TTFT and TPOT SLOs, migration 0134) per second and as a share of the requests, and
  the count per cause (ok, queued, prefill, decode, preempted, aborted, error) — "n/a" / no cause table from a
  collector that does not serve them;
- ``/api/v1/alerts`` — firing alerts;
- ``/api/v1/startup`` — engine starts (:mod:`vllm_otel_collector.analytics.startup`): the newest one is shown phase
  by phase while it runs and for :data:`STARTUP_SHOWN_S` seconds after it is ready (omitted when the route is absent);
- ``/api/v1/engine`` — latest engine gauges (KV cache usage 0..1, running and waiting requests) per service; served
  by ``/api/v1/engine`` (:func:`vllm_otel_collector.analytics.engine.engine_route`). When absent, those cells show "n/a".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from vllm_otel_collector.api.client import DEFAULT_API, ApiClient

__all__ = ["DEFAULT_API", "Snapshot", "fetch_snapshot", "render", "run_top"]

#: How long a finished engine start stays on screen (seconds after its last span ended).
STARTUP_SHOWN_S = 300.0
@dataclass
class Snapshot:
    """One refresh: ``groups`` from /stats, ``alerts`` firing, ``engine`` per service (None when unavailable)."""

    window: float
    groups: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    engine: list[dict[str, Any]] | None = None
    starts: list[dict[str, Any]] | None = None
    taken_at: float = field(default_factory=time.time)


class StoreSource:
    """The read-API routes answered straight from a ClickHouse store (``top --clickhouse``): the handlers the
    collector's API serves (``routes``: path → handler), so both sources give identical frames."""

    def __init__(self, store, routes: dict[str, Any]):
        self.store, self.routes = store, routes

    def get(self, route: str, params: dict[str, Any]) -> tuple[int, dict]:
        handler = self.routes.get(route)
        if handler is None:
            return 404, {"error": f"no route {route}"}
        try:
            return handler(self.store, {k: str(v) for k, v in params.items()})
        except Exception as exc:  # noqa: BLE001 - one line for the user, as the API would answer
            return 500, {"error": (str(exc).splitlines() or [type(exc).__name__])[0][:300]}

    def get_ok(self, route: str, params: dict[str, Any]) -> dict:
        status, body = self.get(route, params)
        if status != 200:
            from vllm_otel_collector.errors import UserError

            raise UserError(f"{route} answered {status}: {body.get('error', body)}")
        return body


def fetch_snapshot(api: str, window: float = 60.0, token: str | None = None, timeout: float = 10.0,
                   source: StoreSource | None = None) -> Snapshot:
    """GET the routes from the read API at ``api`` (or from ``source``, a store). Raises :class:`UserError` when
    the API is unreachable or answers an error."""
    client = source or ApiClient(api, token, timeout)
    stats = client.get_ok("/api/v1/stats", {"mode": "current", "window": window})
    alerts = client.get_ok("/api/v1/alerts", {"state": "firing"})
    status, engine = client.get("/api/v1/engine", {"window": max(window, 120)})
    s_status, starts = client.get("/api/v1/startup", {"window": 3600, "limit": 1})
    return Snapshot(window=window, groups=stats.get("groups", []), alerts=alerts.get("alerts", []),
                    engine=engine.get("services") if status == 200 else None,
                    starts=starts.get("starts") if s_status == 200 else None)


def _s(v: float | None) -> str:
    return "–" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")


#: ``llm_requests.Cause`` values, in the order of the cause table.
CAUSES = ("ok", "queued", "prefill", "decode", "preempted", "aborted", "error")


def _goodput(g: dict[str, Any]) -> str:
    """``"0.42/s 93.3%"``: good requests per second and good / requests; "n/a" when the API has no goodput."""
    gp = g.get("goodput")
    if not gp:
        return "n/a"
    ratio = "–" if gp.get("ratio") is None else f"{gp['ratio'] * 100:.1f}%"
    return f"{gp.get('per_second', 0):.2f}/s {ratio}"


def _causes(snap: Snapshot) -> Table | None:
    """Requests per cause in the window, one row per (service, model, operation) that has causes; None when the API
    serves none."""
    groups = [g for g in snap.groups if g.get("causes")]
    if not groups:
        return None
    t = Table(title=f"why slow — requests per cause, last {snap.window:g} s", expand=True)
    for col in ("service", "model", *CAUSES):
        t.add_column(col, justify="left" if col in ("service", "model") else "right")
    for g in groups:
        c = g["causes"]
        t.add_row(g.get("service", ""), g.get("model", ""),
                  *(f"[bold red]{c.get(k, 0)}[/]" if k != "ok" and c.get(k) else str(c.get(k, 0)) for k in CAUSES))
    return t


def render(snap: Snapshot) -> Group:
    """The frame: the engine start in progress (if any), one row per (service, model, operation) with engine
    gauges, firing alerts."""
    t = Table(title=f"vLLM serving — last {snap.window:g} s", expand=True)
    for col in ("service", "model", "req/s", "goodput", "p95 TTFT", "p95 TPOT", "tokens/s", "errors", "KV cache",
                "in flight"):
        t.add_column(col, justify="left" if col in ("service", "model") else "right")
    engine = {e["service"]: e for e in (snap.engine or [])}
    for g in snap.groups:
        lat, n = g.get("latency", {}), g.get("requests", 0)
        e = engine.get(g.get("service"))
        kv = "n/a" if snap.engine is None else ("–" if not e or e["kv_cache_usage"] is None
                                               else f"{e['kv_cache_usage'] * 100:.1f}%")
        flight = "n/a" if snap.engine is None else (
            "–" if not e or e["running"] is None else f"{e['running']:.0f} run / {(e['waiting'] or 0):.0f} wait")
        t.add_row(g.get("service", ""), g.get("model", ""), f"{n / snap.window:.2f}", _goodput(g),
                  _s(lat.get("ttft", {}).get("p95")), _s(lat.get("tpot", {}).get("p95")),
                  f"{g.get('tokens', {}).get('output', 0) / snap.window:.1f}",
                  f"{(g.get('error_rate') or 0) * 100:.1f}%", kv, flight)
    if not snap.groups:
        t.add_row("(no requests in the window)", "", "", "", "", "", "", "", "", "")
    a = Table(title=f"firing alerts: {len(snap.alerts)}", expand=True)
    for col in ("rule", "severity", "message", "since"):
        a.add_column(col)
    for al in snap.alerts:
        a.add_row(str(al.get("RuleName", "")), str(al.get("Severity", "")), str(al.get("Message", "")),
                  str(al.get("StartsAt", "")))
    stamp = time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
    causes = _causes(snap)
    parts = [Panel(t, subtitle=f"refreshed {stamp}"), *([causes] if causes else []), a]
    start = (snap.starts or [None])[0]
    if start and (not start["ready"] or snap.taken_at - start["updated"] <= STARTUP_SHOWN_S):
        from vllm_otel_collector.views.startup import render_start

        parts.insert(0, render_start(start, snap.taken_at))
    return Group(*parts)


def run_top(api: str, window: float = 60.0, interval: float = 2.0, once: bool = False, token: str | None = None,
            console: Console | None = None, source: StoreSource | None = None) -> int:
    """Print one frame (``once``) or refresh every ``interval`` seconds until Ctrl-C (rich Live); from the read API
    at ``api``, or from ``source`` (a store)."""
    from rich.live import Live

    console = console or Console()
    if once:
        console.print(render(fetch_snapshot(api, window, token, source=source)))
        return 0
    with Live(render(fetch_snapshot(api, window, token, source=source)), console=console, refresh_per_second=4,
              screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(render(fetch_snapshot(api, window, token, source=source)))
