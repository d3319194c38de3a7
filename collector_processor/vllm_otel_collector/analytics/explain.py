"""``vllm-otel explain TRACE_ID|REQUEST_ID``: why one request was slow (or what one engine start cost), in one answer.

A request: its timeline (queue → prefill → decode, seconds from arrival), its stored cause (migration 0134) in one
sentence with the numbers behind it, the engine state at its arrival, its SLOs and the baseline it was held to, and
the Jaeger link. An engine start (a model-load trace id): its phases, the compile cache, and — when vLLM fell back
from a cache — where it looked and vLLM's reason. Both read only what ClickHouse stored (``llm_requests``,
``llm_startup_spans``), so both pipelines (our collector, the stock Collector) answer alike.

Route ``/api/v1/explain?id=…`` (:func:`route`): 200 with the answer, 404 for an id nothing matches, 400 for an id
that cannot be one (empty, longer than 256 characters).
"""

from __future__ import annotations

import re
from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics import causes as C
from vllm_otel_collector.analytics.loads import LOAD_ATTRIBUTES
from vllm_otel_collector.analytics.sqlnames import CAUSE_FACTOR_KEY, CAUSE_SLACK_KEY

DEFAULT_JAEGER_URL = "http://localhost:16686"
MAX_ID_CHARS = 256
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _s(v: float | None) -> str:
    """Seconds for a sentence: 3 significant digits, ms below 1 s."""
    if v is None:
        return "n/a"
    return f"{v * 1000:.3g} ms" if abs(v) < 1 else f"{v:.3g} s"


def _settings(store) -> tuple[float, float]:
    rows = store.query("SELECT Key, argMax(Value, UpdatedAt) FROM vllm_otel_settings WHERE Key IN {k:Array(String)} "
                       "GROUP BY Key", parameters={"k": [CAUSE_FACTOR_KEY, CAUSE_SLACK_KEY]}).result_rows
    got = {}
    for k, v in rows:
        try:
            got[k] = float(v)
        except ValueError:
            pass
    return got.get(CAUSE_FACTOR_KEY, C.SLOW_FACTOR), got.get(CAUSE_SLACK_KEY, C.MIN_EXCESS_SECONDS)


def sentence(row: dict, factor: float = C.SLOW_FACTOR, slack: float = C.MIN_EXCESS_SECONDS) -> str:
    """The stored cause of ``row`` (an ``llm_requests`` row) in one sentence with the numbers behind it."""
    f = C.facts_of_row(row)
    cause = row["Cause"]
    ttft_missed, tpot_missed, base_slow = C.missed(f, factor, slack)
    against = []
    if ttft_missed:
        against.append(f"TTFT {_s(f.ttft)} > SLO {_s(f.slo_ttft)}")
    if tpot_missed:
        against.append(f"TPOT {_s(f.tpot)} > SLO {_s(f.slo_tpot)}")
    if base_slow:
        against.append(f"E2E {_s(f.e2e)} > {factor:g}× its baseline {_s(C.expected_e2e(f))}")
    why = f" ({'; '.join(against)})" if against else ""
    arrival = []
    if row.get("WaitingAtArrival") is not None:
        arrival.append(f"{row['WaitingAtArrival']} waiting and {row['RunningAtArrival']} running at arrival")
    if row.get("KVCacheUsageAtArrival") is not None:
        arrival.append(f"KV cache {row['KVCacheUsageAtArrival']:.0%} used")
    state = f", {', '.join(arrival)}" if arrival else ""
    if cause == "error":
        return f"error: the request failed ({row['FinishReason'] or row['Status']}" \
               f"{', ' + row['ErrorType'] if row.get('ErrorType') else ''}) after {_s(f.e2e)}"
    if cause == "aborted":
        return f"aborted: its client cancelled it after {_s(f.e2e)}"
    if cause == "ok":
        return (f"ok: met its SLOs (TTFT {_s(f.ttft)} ≤ {_s(f.slo_ttft) if f.slo_ttft else 'none'}, TPOT "
                f"{_s(f.tpot)} ≤ {_s(f.slo_tpot) if f.slo_tpot else 'none'})"
                + (f" and stayed within {factor:g}× its baseline" if f.has_baseline else ""))
    if cause == "preempted":
        return (f"preempted: vLLM preempted it {f.preemptions} time{'s' if f.preemptions != 1 else ''} (its KV-cache "
                f"blocks were freed and its prompt recomputed){why}{state}")
    if cause == "queued":
        base = f" vs baseline {_s(f.baseline_queue)}" if f.baseline_queue is not None else ""
        return f"queued: it waited {_s(f.queue)} for the scheduler{base}{state}{why}"
    if cause == "prefill":
        share = row.get("PrefixHitShare")
        hit = "no prefix-cache hit" if not share else f"{share:.0%} of it from the prefix cache"
        base = f" vs baseline {_s(f.baseline_prefill)} for this prompt length" if f.baseline_prefill is not None else ""
        return (f"prefill: processing its {row['InputTokens']}-token prompt ({hit}) took {_s(f.prefill)}{base}"
                f"{why}")
    base = f" vs baseline {_s(f.baseline_tpot)}" if f.baseline_tpot is not None else ""
    running = f", {row['RunningAtArrival']} requests running at arrival" if row.get("RunningAtArrival") is not None \
        else ""
    return (f"decode: {row['OutputTokens']} tokens at TPOT {_s(f.tpot)}{base} took {_s(f.decode)}{running}{why}")


def _request_answer(row: dict, factor: float, slack: float, jaeger_url: str) -> dict[str, Any]:
    f = C.facts_of_row(row)
    q, p, d = (row[k] or 0.0 for k in ("Queue", "Prefill", "Decode"))
    return {
        "kind": "request", "trace_id": row["TraceId"], "span_id": row["SpanId"], "request_id": row["RequestId"],
        "timestamp": row["Timestamp"].timestamp(), "service": row["ServiceName"], "model": row["Model"],
        "operation": row["Operation"], "status": row["Status"], "finish_reason": row["FinishReason"],
        "cause": row["Cause"], "sentence": sentence(row, factor, slack), "good": bool(row["Good"]),
        "timeline": [{"phase": "queue", "start": 0.0, "seconds": row["Queue"]},
                     {"phase": "prefill", "start": q, "seconds": row["Prefill"]},
                     {"phase": "decode", "start": q + p, "seconds": row["Decode"]}],
        "latency": {"ttft": row["TTFT"], "tpot": row["TPOT"], "e2e": row["E2E"], "queue_plus_model": q + p + d},
        "tokens": {"input": row["InputTokens"], "output": row["OutputTokens"], "cached": row["CachedTokens"],
                   "prefix_hit_share": row["PrefixHitShare"]},
        "preemptions": row["Preemptions"],
        "arrival": {"running": row["RunningAtArrival"], "waiting": row["WaitingAtArrival"],
                    "kv_cache_usage": row["KVCacheUsageAtArrival"]},
        "slo": {"ttft": row["SLOTTFT"] or None, "tpot": row["SLOTPOT"] or None},
        "baseline": None if not f.has_baseline else {
            "queue": row["BaselineQueue"], "prefill": row["BaselinePrefill"], "tpot": row["BaselineTPOT"],
            "expected_e2e": C.expected_e2e(f), "slow_factor": factor, "min_excess_seconds": slack},
        "excess": C.excess(f),
        "jaeger_url": f"{jaeger_url.rstrip('/')}/trace/{row['TraceId']}",
    }


def _load_answer(store, trace_id: str, jaeger_url: str) -> dict[str, Any] | None:
    res = store.query("SELECT Timestamp, SpanName, Duration, Attributes FROM llm_startup_spans FINAL "
                      "WHERE TraceId = {t:String} ORDER BY Timestamp, SpanId", parameters={"t": trace_id})
    spans = res.result_rows
    if not spans:
        return None
    t0 = spans[0][0].timestamp()
    attrs: dict[str, str] = {}
    for _, name, _, a in spans:  # the root's value, else the earliest span's (as llm_model_loads folds them)
        is_root = name in sc.MODEL_LOAD_ROOT_NAMES
        for k, v in a.items():
            if is_root or k not in attrs:
                attrs[k] = v
    root = next((s for s in spans if s[1] in sc.MODEL_LOAD_ROOT_NAMES), spans[0])
    reason = attrs.get(sc.LOAD_COMPILE_CACHE_FALLBACK_REASON, "")
    hit = attrs.get(sc.LOAD_COMPILE_CACHE_HIT, "").strip().lower()
    total = root[2] / 1e9
    if reason:
        cache = (f"the compile cache at {attrs.get(sc.LOAD_COMPILE_CACHE_PATH) or '(path not reported)'} failed to "
                 f"load ({reason}), so vLLM compiled again")
    elif hit in ("true", "1"):
        cache = "the compile cache was hit"
    elif hit in ("false", "0"):
        cache = "the compile cache was missed (nothing cached yet for this model and flags)"
    else:
        cache = "the compile cache was not reported"
    compile_s = attrs.get(sc.LOAD_COMPILE_SECONDS)
    sent = f"engine start of {attrs.get(sc.LOAD_MODEL_NAME) or 'a model'} took {_s(total)}; {cache}" + (
        f"; compiling took {_s(float(compile_s))}" if compile_s else "")
    return {"kind": "model_load", "trace_id": trace_id, "sentence": sent, "total_seconds": total,
            "phases": [{"span": name, "start": ts.timestamp() - t0, "seconds": dur / 1e9}
                       for ts, name, dur, _ in spans],
            "compile_cache": {"hit": hit or None, "path": attrs.get(sc.LOAD_COMPILE_CACHE_PATH) or None,
                              "fallback_reason": reason or None},
            "attributes": {k: attrs[k] for k in LOAD_ATTRIBUTES if k in attrs},
            "jaeger_url": f"{jaeger_url.rstrip('/')}/trace/{trace_id}"}


def explain(store, ident: str, jaeger_url: str = DEFAULT_JAEGER_URL) -> dict[str, Any] | None:
    """The answer for ``ident`` (a trace id: 32 hex characters; else a request id): ``{"kind": "request", ...}``
    for a request (the newest request span of that trace or id; ``others`` counts the rest), ``{"kind":
    "model_load", ...}`` for an engine start, ``None`` when nothing matches. Times are seconds.

    Raises:
        ValueError: ``ident`` is empty or longer than :data:`MAX_ID_CHARS` characters.
    """
    ident = ident.strip()
    if not ident or len(ident) > MAX_ID_CHARS:
        raise ValueError(f"an id is a trace id (32 hex characters) or a request id of at most {MAX_ID_CHARS} "
                         "characters")
    is_trace = bool(_TRACE_ID.match(ident.lower()))
    key = ident.lower() if is_trace else ident
    res = store.query("SELECT * FROM llm_requests WHERE " + ("TraceId" if is_trace else "RequestId")
                      + " = {id:String} ORDER BY Timestamp DESC, SpanId LIMIT 100", parameters={"id": key})
    rows = [dict(zip(res.column_names, r)) for r in res.result_rows]
    if rows:
        factor, slack = _settings(store)
        answer = _request_answer(rows[0], factor, slack, jaeger_url)
        answer["others"] = len(rows) - 1
        return answer
    return _load_answer(store, key, jaeger_url) if is_trace else None


def route(store, query: dict[str, str]) -> tuple[int, dict]:
    """``GET /api/v1/explain?id=…[&jaeger_url=…]``: 200 answer, 404 unknown id (ValueError → 400)."""
    ident = query.get("id", "")
    answer = explain(store, ident, query.get("jaeger_url") or DEFAULT_JAEGER_URL)
    if answer is None:
        return 404, {"error": f"no request or engine start with id {ident[:80]!r}"}
    return 200, answer
