"""What the HTML report shows, read from ClickHouse: requests, per-minute throughput, causes and goodput, model
loads, alerts.

All times are unix seconds (floats); latencies are seconds. Reads ``llm_requests``, ``llm_requests_1m``,
``llm_model_loads`` (FINAL: the newest assembly of each load) and ``llm_alerts`` of the store's database. Causes and
goodput (migration 0134): per request ``Cause`` and ``Good``; per rollup minute and model the requests, ``Good`` and
the count per cause (:data:`CAUSES`: the slow ones from ``Cause<Name>``, aborted = ``Aborts``, error = ``Errors`` +
``Timeouts``, ok = the rest).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from vllm_otel_collector.errors import UserError

#: Upper bound on request rows pulled into one page (the newest are kept).
MAX_REQUESTS = 20000
#: ``llm_requests.Cause`` values, in the order the report stacks them; the slow ones have rollup columns.
CAUSES = ("ok", "queued", "prefill", "decode", "preempted", "aborted", "error")
SLOW_CAUSES = ("queued", "prefill", "decode", "preempted")

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
    #: per (rollup minute, model): {"Bucket" (unix s), "Model", "Requests", "Good", and a count per cause in CAUSES}
    minutes: list[dict[str, Any]] = field(default_factory=list)
    loads: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False


_REQ_COLS = ("Timestamp", "TraceId", "Model", "Status", "TTFT", "TPOT", "E2E", "Queue", "Prefill", "Decode",
             "InputTokens", "OutputTokens", "TokensPerSecond", "E2ELevel", "TTFTLevel", "Cause", "Good",
             "RunningAtArrival", "WaitingAtArrival", "KVCacheUsageAtArrival", "PrefixHitShare", "BaselineQueue",
             "BaselinePrefill", "BaselineTPOT", "SLOTTFT", "SLOTPOT")
_MINUTE_COLS = ("Bucket", "Model", "Requests", "Good", *SLOW_CAUSES, "aborted", "error")
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
                     f"toString(E2ELevel), toString(TTFTLevel), toString(Cause), Good, RunningAtArrival, "
                     f"WaitingAtArrival, KVCacheUsageAtArrival, PrefixHitShare, BaselineQueue, BaselinePrefill, "
                     f"BaselineTPOT, SLOTTFT, SLOTPOT FROM llm_requests WHERE {window} "
                     f"ORDER BY Timestamp DESC LIMIT {MAX_REQUESTS + 1}", _REQ_COLS, p)
        thr = store.query("SELECT toUnixTimestamp(Bucket), sum(OutputTokens) / 60 FROM llm_requests_1m "
                          "WHERE Bucket >= toDateTime({since:Float64}) AND Bucket < toDateTime({until:Float64}) "
                          "GROUP BY Bucket ORDER BY Bucket", parameters=p).result_rows
        minutes = _rows(store, "SELECT toUnixTimestamp(Bucket), Model, sum(Requests), sum(Good), sum(CauseQueued), "
                        "sum(CausePrefill), sum(CauseDecode), sum(CausePreempted), sum(Aborts), "
                        "sum(Errors) + sum(Timeouts) FROM llm_requests_1m WHERE Bucket >= toDateTime({since:Float64}) "
                        "AND Bucket < toDateTime({until:Float64}) GROUP BY Bucket, Model ORDER BY Bucket, Model",
                        _MINUTE_COLS, p)
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
    for m in minutes:
        m["Bucket"] = float(m["Bucket"])
        m["ok"] = m["Requests"] - sum(m[c] for c in CAUSES[1:])
    truncated = len(reqs) > MAX_REQUESTS
    reqs = list(reversed(reqs[:MAX_REQUESTS]))
    return ReportData(since=since, until=until, requests=reqs, throughput=[(float(t), float(v)) for t, v in thr],
                      minutes=minutes, loads=loads, alerts=alerts, truncated=truncated)


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


def cause_columns(minutes: list[dict[str, Any]], step: int) -> list[tuple[float, dict[str, int]]]:
    """Rollup minutes (all models) summed into ``step``-second columns (a multiple of 60): ``[(column start,
    {cause: count})]`` oldest first, a column for every step from the first minute to the last (empty ones zero)."""
    if not minutes:
        return []
    first = min(m["Bucket"] for m in minutes) // step * step
    n = int((max(m["Bucket"] for m in minutes) - first) // step) + 1
    cols = [{c: 0 for c in CAUSES} for _ in range(n)]
    for m in minutes:
        col = cols[int((m["Bucket"] - first) // step)]
        for c in CAUSES:
            col[c] += m[c]
    return [(first + i * step, col) for i, col in enumerate(cols)]


def goodput_series(minutes: list[dict[str, Any]], step: int) -> dict[str, list[tuple[float, float, float]]]:
    """Per model, ``[(column start, throughput, goodput)]`` in requests per second over ``step``-second columns
    (requests / step, good / step), a column for every step from the window's first minute to its last."""
    if not minutes:
        return {}
    first = min(m["Bucket"] for m in minutes) // step * step
    n = int((max(m["Bucket"] for m in minutes) - first) // step) + 1
    sums: dict[str, list[list[int]]] = {}
    for m in minutes:
        col = sums.setdefault(m["Model"], [[0, 0] for _ in range(n)])[int((m["Bucket"] - first) // step)]
        col[0] += m["Requests"]
        col[1] += m["Good"]
    return {model: [(first + i * step, r / step, g / step) for i, (r, g) in enumerate(cols)]
            for model, cols in sorted(sums.items())}


def goodput_by_model(minutes: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    """``(seconds, rows)``: the seconds the rollup minutes cover (first minute to the end of the last one, all models)
    and per model ``{Model, Requests, Good, ratio (good / requests), throughput and goodput (requests/s over those
    seconds), and a count per cause}``, by model name."""
    if not minutes:
        return 0.0, []
    seconds = max(m["Bucket"] for m in minutes) + 60 - min(m["Bucket"] for m in minutes)
    per: dict[str, dict[str, Any]] = {}
    for m in minutes:
        row = per.setdefault(m["Model"], {"Model": m["Model"], "Requests": 0, "Good": 0, **{c: 0 for c in CAUSES}})
        for k in ("Requests", "Good", *CAUSES):
            row[k] += m[k]
    rows = []
    for model in sorted(per):
        row = per[model]
        row.update(ratio=row["Good"] / row["Requests"] if row["Requests"] else None,
                   throughput=row["Requests"] / seconds, goodput=row["Good"] / seconds)
        rows.append(row)
    return seconds, rows
