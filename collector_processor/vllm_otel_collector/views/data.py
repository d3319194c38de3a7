"""What the HTML report shows, read from ClickHouse: requests, per-minute throughput, model loads, alerts.

All times are unix seconds (floats); latencies are seconds. Reads ``llm_requests``, ``llm_requests_1m``,
``llm_model_loads`` (FINAL: the newest assembly of each load) and ``llm_alerts`` of the store's database.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from vllm_otel_collector.errors import UserError

#: Upper bound on request rows pulled into one page (the newest are kept).
MAX_REQUESTS = 20000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float | None = None) -> float:
    """``--since`` → unix seconds: a duration back from now (``90s``, ``30m``, ``6h``, ``2d``, ``1w``), an ISO 8601
    time (``2026-11-21T10:00:00``, UTC unless it has an offset) or unix seconds. Raises :class:`UserError`."""
    from datetime import datetime, timezone

    now = time.time() if now is None else now
    if m := _DURATION.match(value):
        return now - float(m[1]) * _UNITS[m[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since {value!r}: expected a duration like 30m/6h/2d, an ISO time or unix seconds") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


@dataclass
class ReportData:
    """Everything one report page plots (see module docstring for units)."""

    since: float
    until: float
    requests: list[dict[str, Any]] = field(default_factory=list)
    throughput: list[tuple[float, float]] = field(default_factory=list)  # (minute, output tokens/s)
    loads: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False


_REQ_COLS = ("Timestamp", "TraceId", "Model", "Status", "TTFT", "TPOT", "E2E", "Queue", "Prefill", "Decode",
             "InputTokens", "OutputTokens", "TokensPerSecond", "E2ELevel", "TTFTLevel")
_LOAD_COLS = ("Timestamp", "TraceId", "Model", "ServiceName", "LoadSeconds", "WeightsSeconds", "CompileSeconds",
              "KVCacheSeconds", "WarmupSeconds", "ColdStartSeconds", "CompileCacheHit", "LoadLevel")
_ALERT_COLS = ("Timestamp", "Fingerprint", "RuleName", "State", "Severity", "Message", "Value", "Threshold")


def _rows(store, sql: str, cols: tuple[str, ...], params: dict) -> list[dict[str, Any]]:
    return [dict(zip(cols, r)) for r in store.query(sql, parameters=params).result_rows]


def collect(store, since: float, until: float) -> ReportData:
    """Read the report's data for ``since <= time < until`` (unix seconds) from ``store``.

    Raises :class:`UserError` with one line when the store is unreachable or lacks the analytics tables.
    """
    p = {"since": float(since), "until": float(until)}
    window = "Timestamp >= toDateTime64({since:Float64}, 9) AND Timestamp < toDateTime64({until:Float64}, 9)"
    try:
        reqs = _rows(store, f"SELECT toUnixTimestamp64Nano(Timestamp) / 1e9, TraceId, Model, toString(Status), TTFT, "
                     f"TPOT, E2E, Queue, Prefill, Decode, InputTokens, OutputTokens, TokensPerSecond, "
                     f"toString(E2ELevel), toString(TTFTLevel) FROM llm_requests WHERE {window} "
                     f"ORDER BY Timestamp DESC LIMIT {MAX_REQUESTS + 1}", _REQ_COLS, p)
        thr = store.query("SELECT toUnixTimestamp(Bucket), sum(OutputTokens) / 60 FROM llm_requests_1m "
                          "WHERE Bucket >= toDateTime({since:Float64}) AND Bucket < toDateTime({until:Float64}) "
                          "GROUP BY Bucket ORDER BY Bucket", parameters=p).result_rows
        loads = _rows(store, "SELECT toUnixTimestamp64Nano(Timestamp) / 1e9, TraceId, Model, ServiceName, LoadSeconds, "
                      "WeightsSeconds, CompileSeconds, KVCacheSeconds, WarmupSeconds, ColdStartSeconds, "
                      f"CompileCacheHit, toString(LoadLevel) FROM llm_model_loads FINAL WHERE {window} "
                      "ORDER BY Timestamp", _LOAD_COLS, p)
        alerts = _rows(store, "SELECT toUnixTimestamp64Milli(Timestamp) / 1e3, Fingerprint, RuleName, toString(State), "
                       "Severity, Message, Value, Threshold FROM llm_alerts "
                       "WHERE Timestamp < toDateTime64({until:Float64}, 3) ORDER BY Timestamp", _ALERT_COLS, p)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - clickhouse-connect/chdb raise many types; the user needs one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot read the report data from ClickHouse: {first[:300]}") from None
    truncated = len(reqs) > MAX_REQUESTS
    reqs = list(reversed(reqs[:MAX_REQUESTS]))
    return ReportData(since=since, until=until, requests=reqs, throughput=[(float(t), float(v)) for t, v in thr],
                      loads=loads, alerts=alerts, truncated=truncated)


def alert_intervals(alerts: list[dict[str, Any]], since: float, until: float) -> list[tuple[str, float, float, str]]:
    """Firing intervals ``(rule, start, end, severity)`` from state-change rows (oldest first), clipped to the
    window; an alert still firing at ``until`` ends there."""
    open_: dict[str, dict[str, Any]] = {}
    out = []
    for a in alerts:
        fp = a["Fingerprint"]
        if a["State"] == "firing" and fp not in open_:
            open_[fp] = a
        elif a["State"] == "resolved" and fp in open_:
            start = open_.pop(fp)
            out.append((start["RuleName"], start["Timestamp"], a["Timestamp"], start["Severity"]))
    out += [(a["RuleName"], a["Timestamp"], until, a["Severity"]) for a in open_.values()]
    return sorted((r, max(s, since), min(e, until), sev) for r, s, e, sev in out if e >= since)
