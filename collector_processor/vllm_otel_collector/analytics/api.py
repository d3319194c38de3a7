"""Read API route handlers: ``handler(store, query: dict[str, str]) -> (http_status, json_body)``.

- ``GET /api/v1/stats?mode=current|history|aggregated&window=300&since=&until=&step=60&service=&model=&sla=2``
  current: exact window statistics from raw ``llm_requests`` (``window`` seconds ending now, or since/until);
  history: per-bucket series from the 1m rollup (``step=3600`` → the 1h rollup); aggregated: rollups merged per
  (service, model, operation) over since/until (default last 24 h) plus usage by model and LoRA adapter.
- ``GET /api/v1/alerts?state=firing|all&since=&limit=100`` — firing alerts (newest state per fingerprint) or the
  transition log.
- ``GET /api/v1/requests?trace_id=&since=&until=&status=&service=&model=&limit=100`` — ``llm_requests`` rows.
- ``GET /api/v1/model_loads?since=&limit=100`` — ``llm_model_loads`` rows.

Times are unix seconds (floats accepted); bad parameters raise ``ValueError`` → HTTP 400 with a one-line message.
All values are bound as query parameters.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from vllm_otel_collector.analytics.alerts import firing_state
from vllm_otel_collector.analytics.explain import route as explain_route
from vllm_otel_collector.analytics.stats import current_stats, history, history_step, rollup_window, usage_query

MAX_LIMIT = 100_000
MAX_WINDOW_S = 400 * 86400  #: the longest window a route accepts (seconds)
STATUSES = ("ok", "error", "abort", "timeout")


def number_param(query: dict[str, str], name: str, default: float | None, lo: float = 0.0,
                 hi: float = 1e12) -> float | None:
    """Query parameter ``name`` as a finite float in ``[lo, hi]`` (``default`` when absent or blank).

    Raises:
        ValueError: not a number, NaN, ±Inf or out of range (→ HTTP 400 with this one-line message).
    """
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"parameter {name} must be a number, got {raw[:40]!r}") from None
    if not (lo <= value <= hi):  # False for NaN
        raise ValueError(f"parameter {name} must be between {lo:g} and {hi:g}")
    return value


def _limit(query: dict[str, str]) -> int:
    return int(number_param(query, "limit", 100, 1, MAX_LIMIT))


def _range(query: dict[str, str], default_seconds: float, now: float) -> tuple[float, float]:
    until = number_param(query, "until", now)
    window = number_param(query, "window", default_seconds, 1, MAX_WINDOW_S)
    since = number_param(query, "since", until - window)
    if since >= until:
        raise ValueError("since must be before until")
    return since, until


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf → None, datetimes → ISO strings, recursively."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _rows(result) -> list[dict[str, Any]]:
    return [_clean(dict(zip(result.column_names, r))) for r in result.result_rows]


def make_routes(default_window: int = 300, sla_seconds: float = 2.0,
                clock: Callable[[], float] = time.time) -> dict[str, Callable]:
    """The analytics routes. ``clock`` gives "now" in unix seconds (tests pin it)."""

    def stats(store, query: dict[str, str]):
        mode = query.get("mode", "current")
        service, model = query.get("service", ""), query.get("model", "")
        now = clock()
        if mode == "current":
            since, until = _range(query, default_window, now)
            sla = number_param(query, "sla", sla_seconds, 1e-6, 1e6)
            groups = current_stats(store, since, until, sla_seconds=sla, service=service, model=model)
            return 200, _clean({"mode": mode, "since": since, "until": until, "groups": groups})
        if mode == "history":
            since, until = _range(query, 3600, now)
            step = int(number_param(query, "step", 60, 60, 3600))
            points = history(store, since, until, step_seconds=step, service=service, model=model)
            return 200, _clean({"mode": mode, "since": since, "until": until, "step": history_step(step),
                                "points": points})
        if mode == "aggregated":
            since, until = _range(query, 86400, now)
            # coarser rollups for longer windows: the edges move by at most one bucket (≤ 0.7 % of the window)
            table = ("llm_requests_1h" if until - since > 2 * 86400 else
                     "llm_requests_5m" if until - since > 12 * 3600 else "llm_requests_1m")
            groups = rollup_window(store, since, until, grouping="service_model_operation", table=table,
                                   service=service, model=model)
            return 200, _clean({
                "mode": mode, "since": since, "until": until, "table": table,
                "groups": [{"service": k[0], "model": k[1], "operation": k[2], **m} for k, m in groups.items()],
                "usage": usage_query(store, since, until, service=service, model=model)})
        raise ValueError(f"mode must be current, history or aggregated, got {mode[:40]!r}")

    def alerts(store, query: dict[str, str]):
        state = query.get("state", "firing")
        if state == "firing":
            firing = firing_state(store)
            if not firing:
                return 200, {"state": state, "alerts": []}
            res = store.query(
                "SELECT Fingerprint, argMax(RuleName, Timestamp) AS RuleName, argMax(Severity, Timestamp) AS Severity,"
                " argMax(Labels, Timestamp) AS Labels, argMax(Value, Timestamp) AS Value,"
                " argMax(Threshold, Timestamp) AS Threshold, argMax(Message, Timestamp) AS Message,"
                " argMax(Suggestion, Timestamp) AS Suggestion, argMax(StartsAt, Timestamp) AS StartsAt"
                " FROM llm_alerts WHERE Fingerprint IN {fps:Array(String)} GROUP BY Fingerprint"
                " ORDER BY StartsAt DESC, Fingerprint", parameters={"fps": sorted(firing)})
            return 200, {"state": state, "alerts": _rows(res)}
        if state == "all":
            since = number_param(query, "since", 0.0)
            res = store.query(
                "SELECT Timestamp, Fingerprint, RuleName, State, Severity, Labels, Value, Threshold, WindowSeconds,"
                " Message, Suggestion, StartsAt FROM llm_alerts WHERE Timestamp >= toDateTime64({since:Float64}, 3)"
                " ORDER BY Timestamp DESC, Fingerprint LIMIT {limit:UInt32}",
                parameters={"since": since, "limit": _limit(query)})
            return 200, {"state": state, "alerts": _rows(res)}
        raise ValueError(f"state must be firing or all, got {state[:40]!r}")

    def requests(store, query: dict[str, str]):
        status = query.get("status", "")
        if status and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        trace_id = query.get("trace_id", "").lower()
        if trace_id and (len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id)):
            raise ValueError("trace_id must be 32 hex characters")
        since = number_param(query, "since", 0.0)
        until = number_param(query, "until", 4102444800.0)  # 2100-01-01: no upper bound unless asked
        res = store.query(
            "SELECT * FROM llm_requests WHERE Timestamp >= toDateTime64({since:Float64}, 9)"
            " AND Timestamp < toDateTime64({until:Float64}, 9)"
            " AND ({trace:String} = '' OR TraceId = {trace:String})"
            " AND ({status:String} = '' OR toString(Status) = {status:String})"
            " AND ({service:String} = '' OR ServiceName = {service:String})"
            " AND ({model:String} = '' OR Model = {model:String})"
            " ORDER BY Timestamp DESC, SpanId LIMIT {limit:UInt32}",
            parameters={"since": since, "until": until, "trace": trace_id, "status": status,
                        "service": query.get("service", ""), "model": query.get("model", ""),
                        "limit": _limit(query)})
        return 200, {"requests": _rows(res)}

    def model_loads(store, query: dict[str, str]):
        res = store.query(
            "SELECT * EXCEPT AssembledAt FROM llm_model_loads FINAL"
            " WHERE Timestamp >= toDateTime64({since:Float64}, 9) ORDER BY Timestamp DESC LIMIT {limit:UInt32}",
            parameters={"since": number_param(query, "since", 0.0), "limit": _limit(query)})
        return 200, {"model_loads": _rows(res)}

    return {"/api/v1/stats": stats, "/api/v1/alerts": alerts, "/api/v1/requests": requests,
            "/api/v1/model_loads": model_loads, "/api/v1/explain": explain_route}
