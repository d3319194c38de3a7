"""Span columns → derived rows: ``llm_requests`` (one per request span) and ``span_levels`` (any span with a
``duration`` threshold, e.g. a voice pipeline's ``stt_processing`` / ``tts_synthesis`` / ``llm_response``).

Input is the columnar ``otel_traces`` batch the collector writes (column name → list, clickhouseexporter names;
``SpanAttributes`` values are strings; ``Duration`` is nanoseconds). Output columns are ready for ``Store.insert``.

A request span is any span carrying one of ``semconv.REQUEST_SPAN_KEYS`` (``vllm.finish_reason``,
``vllm.latency.e2e``, or vLLM's native ``gen_ai.latency.e2e``): our instrumentation's request spans and vLLM's native
``llm_request`` spans (attribute names in ``opentelemetry.instrumentation.vllm.semconv``; latencies are read under our
``vllm.latency.*`` names, else vLLM's native ``gen_ai.latency.*``). All latencies are seconds.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics.levels import INVALID, NONE, Thresholds, level
from vllm_otel_collector.plugins import SpanInterest

#: Column order of ``llm_requests`` (migration 0100).
REQUEST_COLUMNS = (
    "Timestamp", "TraceId", "SpanId", "ServiceName", "Model", "Operation", "Status", "FinishReason", "ErrorType",
    "TTFT", "TPOT", "E2E", "Queue", "Prefill", "Decode", "InputTokens", "OutputTokens", "CachedTokens",
    "TokensPerSecond", "Preemptions", "LoraName", "TTFTLevel", "TPOTLevel", "E2ELevel", "QueueLevel",
)
SPAN_LEVEL_COLUMNS = ("Timestamp", "TraceId", "SpanId", "ServiceName", "SpanName", "Metric", "Value", "Threshold",
                      "Level")
STATUSES = ("ok", "error", "abort", "timeout")
_FAILED_FINISH = {sc.FINISH_ABORT: "abort", sc.FINISH_TIMEOUT: "timeout", sc.FINISH_ERROR: "error"}
_ERROR_CODES = {"Error", "ERROR", "STATUS_CODE_ERROR", "error", "2"}


#: Largest finite Float32 (the latency and tokens/s columns): a value above it would be stored as +Inf.
FLOAT32_MAX = 3.4028234663852886e38
UINT32_MAX = 2**32 - 1  #: token count columns
UINT16_MAX = 2**16 - 1  #: Preemptions
#: tokens/s is derived (output_tokens / e2e) only for an e2e of at least this many seconds; a shorter e2e is a clock
#: artefact and would give an unbounded rate.
MIN_RATE_E2E_S = 1e-6


def _seconds(value: float | None) -> float | None:
    """A latency or rate the Float32 column can hold, else ``None`` (NULL): NaN, ±Inf, negative (clock skew) and
    values above :data:`FLOAT32_MAX` are missing, so they never reach a rollup's sum, max or quantiles."""
    if value is None or not (0.0 <= value <= FLOAT32_MAX):  # False for NaN too
        return None
    return value


def _float(attrs: dict, key: str) -> float | None:
    """Attribute ``key`` (a string, as stored) as seconds, or ``None`` when missing / not a number / out of range."""
    raw = attrs.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return _seconds(value)


def _latency(attrs: dict, key: str, native: str) -> float | None:
    """Seconds under our name ``key`` (``vllm.latency.*``), else under vLLM's native name (``gen_ai.latency.*``)."""
    value = _float(attrs, key)
    return _float(attrs, native) if value is None and key not in attrs else value


def _int(attrs: dict, key: str, fallback: str | None = None, cap: int = UINT32_MAX) -> int | None:
    """Attribute ``key`` (else ``fallback``) as a count clamped to ``[0, cap]`` (the column's range): negative → 0,
    above ``cap`` or +Inf → ``cap``; ``None`` when missing, NaN or not a number. Never raises."""
    raw = attrs.get(key)
    if (raw is None or raw == "") and fallback is not None:
        raw = attrs.get(fallback)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    if value != value:
        return None
    if value >= cap:
        return cap
    return int(value) if value > 0 else 0


def _first_finish_reason(raw: str) -> str:
    """``'["stop"]'`` / ``"('stop',)"`` / ``'stop'`` → ``'stop'`` (the exporter stringifies string arrays)."""
    return raw.strip("[]() ").split(",")[0].strip(" '\"")


def status_of(finish_reason: str, status_code: str) -> str:
    """Request status: ``abort``/``timeout``/``error`` from the finish reason, else ``error`` when the span's status
    code is Error, else ``ok``."""
    failed = _FAILED_FINISH.get(finish_reason)
    if failed:
        return failed
    return "error" if status_code in _ERROR_CODES else "ok"


def is_request_span(attrs: dict) -> bool:
    """True for spans that describe one LLM request (ours or vLLM's native ``llm_request``)."""
    return any(k in attrs for k in sc.REQUEST_SPAN_KEYS)


def requests_from_spans(traces: dict[str, list], thresholds: Thresholds) -> dict[str, list]:
    """Build ``llm_requests`` columns from an ``otel_traces`` column batch; spans that are not requests are skipped.

    Derivations (seconds unless noted): TPOT = attribute, else decode / (output_tokens − 1) when output_tokens ≥ 2;
    TokensPerSecond = attribute, else output_tokens / e2e; tokens fall back to vLLM's native ``prompt_tokens`` /
    ``completion_tokens``; Model = response model, else request model; Operation = ``gen_ai.operation.name``, else
    the span name. Levels come from ``thresholds`` for the span's name. Returns a dict of equal-length lists
    (possibly empty lists).

    Every value fits its column, so no span can fail the batch's insert (issue 12): a latency or rate that is NaN,
    ±Inf, negative or above :data:`FLOAT32_MAX` is NULL; token counts are clamped to ``[0, 2^32 − 1]`` and
    preemptions to ``[0, 65535]`` (NaN or not a number → 0); tokens/s is derived only for e2e ≥
    :data:`MIN_RATE_E2E_S`; a TTFT above the request's E2E is NULL with ``TTFTLevel = INVALID`` (flagged, not
    averaged into any rollup).
    """
    out: dict[str, list[Any]] = {c: [] for c in REQUEST_COLUMNS}
    attrs_col = traces.get("SpanAttributes") or []
    if not attrs_col:
        return out
    names = traces["SpanName"]
    codes = traces.get("StatusCode") or [""] * len(attrs_col)
    keys = sc.REQUEST_SPAN_KEYS
    picks = [i for i, a in enumerate(attrs_col) if keys[0] in a or keys[1] in a or keys[2] in a]
    if not picks:
        return out
    for col in ("Timestamp", "TraceId", "SpanId", "ServiceName"):
        src = traces[col]
        out[col] = [src[i] for i in picks]
    by_name: dict[str, tuple] = {}
    for i in picks:
        a = attrs_col[i]
        name = names[i]
        thr = by_name.get(name)
        if thr is None:
            thr = by_name[name] = tuple(thresholds.get(name, m) for m in ("ttft", "tpot", "e2e", "queue"))
        finish = a.get(sc.VLLM_FINISH_REASON) or ""
        if not finish:
            raw = a.get(sc.RESPONSE_FINISH_REASONS)
            finish = _first_finish_reason(raw) if raw else ""
        status = status_of(finish, codes[i])
        ttft = _latency(a, sc.LATENCY_TTFT, sc.NATIVE_LATENCY_TTFT)
        e2e = _latency(a, sc.LATENCY_E2E, sc.NATIVE_LATENCY_E2E)
        queue = _latency(a, sc.LATENCY_QUEUE, sc.NATIVE_LATENCY_QUEUE)
        decode = _latency(a, sc.LATENCY_DECODE, sc.NATIVE_LATENCY_DECODE)
        inp = _int(a, sc.USAGE_INPUT_TOKENS, sc.NATIVE_USAGE_PROMPT_TOKENS)
        outp = _int(a, sc.USAGE_OUTPUT_TOKENS, sc.NATIVE_USAGE_COMPLETION_TOKENS)
        tpot = _float(a, sc.LATENCY_TPOT)
        if tpot is None and decode is not None and outp is not None and outp >= 2:
            tpot = _seconds(decode / (outp - 1))
        tps = _float(a, sc.VLLM_TOKENS_PER_SECOND)
        if tps is None and outp is not None and e2e is not None and e2e >= MIN_RATE_E2E_S:
            tps = _seconds(outp / e2e)
        ttft_level = level(ttft, thr[0]) or NONE
        if ttft is not None and e2e is not None and ttft > e2e:
            ttft, ttft_level = None, INVALID  # inconsistent timing: flagged, kept out of every mean and quantile
        out["Model"].append(a.get(sc.RESPONSE_MODEL) or a.get(sc.REQUEST_MODEL) or "")
        out["Operation"].append(a.get(sc.OPERATION_NAME) or name)
        out["Status"].append(status)
        out["FinishReason"].append(finish)
        out["ErrorType"].append(a.get(sc.ERROR_TYPE) or "")
        out["TTFT"].append(ttft)
        out["TPOT"].append(tpot)
        out["E2E"].append(e2e)
        out["Queue"].append(queue)
        out["Prefill"].append(_latency(a, sc.LATENCY_PREFILL, sc.NATIVE_LATENCY_PREFILL))
        out["Decode"].append(decode)
        out["InputTokens"].append(inp or 0)
        out["OutputTokens"].append(outp or 0)
        out["CachedTokens"].append(_int(a, sc.USAGE_CACHE_READ_INPUT_TOKENS) or 0)
        out["TokensPerSecond"].append(tps)
        out["Preemptions"].append(_int(a, sc.VLLM_NUM_PREEMPTIONS, cap=UINT16_MAX) or 0)
        out["LoraName"].append(a.get(sc.VLLM_LORA_NAME) or "")
        out["TTFTLevel"].append(ttft_level)
        out["TPOTLevel"].append(level(tpot, thr[1]) or "NONE")
        out["E2ELevel"].append(level(e2e, thr[2]) or "NONE")
        out["QueueLevel"].append(level(queue, thr[3]) or "NONE")
    return out


def span_levels_from_spans(traces: dict[str, list], thresholds: Thresholds) -> dict[str, list]:
    """Build ``span_levels`` columns: one row per span whose name has a ``duration`` threshold.

    Value and Threshold are seconds (Duration ns / 1e9). Works for spans of any instrumentation.
    """
    out: dict[str, list[Any]] = {c: [] for c in SPAN_LEVEL_COLUMNS}
    names = traces.get("SpanName") or []
    dur_thr = thresholds.duration
    picks = []
    thrs = []
    for i, name in enumerate(names):
        t = dur_thr(name)
        if t is not None:
            picks.append(i)
            thrs.append(t)
    if not picks:
        return out
    for col in ("Timestamp", "TraceId", "SpanId", "ServiceName", "SpanName"):
        src = traces[col]
        out[col] = [src[i] for i in picks]
    durations = traces["Duration"]
    values = [durations[i] / 1e9 for i in picks]
    out["Metric"] = ["duration"] * len(picks)
    out["Value"] = values
    out["Threshold"] = thrs
    out["Level"] = [level(v, t) or "NONE" for v, t in zip(values, thrs)]
    return out


class AnalyticsProcessor:
    """The collector processor: ``process(traces) -> [(table, columns), ...]`` extra inserts for one batch.

    Args:
        thresholds: level thresholds (:class:`Thresholds`).
    """

    def __init__(self, thresholds: Thresholds):
        self.thresholds = thresholds
        #: the spans this processor reads: request spans (by attribute key) and spans with a duration threshold
        self.interest = SpanInterest(attribute_keys=frozenset(sc.REQUEST_SPAN_KEYS),
                                     span_name=lambda name: thresholds.duration(name) is not None)

    def process(self, traces: dict[str, list]) -> list[tuple[str, dict[str, list]]]:
        """Derived inserts for one ``otel_traces`` column batch: ``llm_requests`` and ``span_levels`` when non-empty."""
        extra = []
        requests = requests_from_spans(traces, self.thresholds)
        if requests["SpanId"]:
            extra.append(("llm_requests", requests))
        levels = span_levels_from_spans(traces, self.thresholds)
        if levels["SpanId"]:
            extra.append(("span_levels", levels))
        return extra

    __call__ = process
