"""Synthetic LLM request data generated inside ClickHouse (``INSERT … SELECT … FROM numbers()``).

Shape (deterministic given the row count, except for ClickHouse's seeded random functions): ``n`` requests spread
evenly over ``days`` days ending at ``end`` (unix seconds), 3 services × 4 models × 2 operations, skewed latencies: TTFT
bimodal with a long tail (85 % log-normal around 0.15 s — prefix-cache hits —, 14 % log-normal around 1 s, 1 % Pareto
α = 1.1 from 0.5 s), queue Pareto (α = 1.2 from 2 ms, capped at half the TTFT), TPOT 15 ms + exponential (mean 10 ms),
E2E = TTFT + TPOT · output tokens, 1 % errors and 0.5 % aborts, input 20–2000 and output 1–512 tokens.
Rows go into ``llm_requests`` so that its materialized views fill ``llm_requests_1m`` / ``_1h`` exactly as the
collector's inserts would.
"""

from __future__ import annotations

from opentelemetry.instrumentation.vllm import semconv as sc

SERVICES = ("chat-api", "batch-summarize", "agent")
MODELS = ("SmolLM2-135M-Instruct", "Llama-3.1-8B-Instruct", "Qwen2.5-7B-Instruct", "Mistral-7B-Instruct")

_LEVEL = ("multiIf({v} IS NULL, 'NONE', {v} < {a}, 'EXCELLENT', {v} < {b}, 'GOOD', {v} < {c}, 'SLOW', 'BOTTLENECK')")


def llm_requests_insert_sql(n: int, offset: int, total: int, end: float, days: float) -> str:
    """SQL inserting rows ``offset .. offset+n-1`` of a ``total``-row data set into ``llm_requests`` (current db)."""
    span = days * 86400.0
    services = "[" + ", ".join(f"'{s}'" for s in SERVICES) + "]"
    models = "[" + ", ".join(f"'{m}'" for m in MODELS) + "]"
    return f"""
INSERT INTO llm_requests (Timestamp, TraceId, SpanId, ServiceName, Model, Operation, Status, FinishReason, ErrorType,
    TTFT, TPOT, E2E, Queue, Prefill, Decode, InputTokens, OutputTokens, CachedTokens, TokensPerSecond, Preemptions,
    LoraName, TTFTLevel, TPOTLevel, E2ELevel, QueueLevel)
SELECT
    toDateTime64({end - span} + (number / {total}) * {span}, 9) AS Timestamp,
    lower(hex(cityHash64(number, 1))) || lower(hex(cityHash64(number, 2))) AS TraceId,
    lower(hex(cityHash64(number, 3))) AS SpanId,
    {services}[1 + number % 3] AS ServiceName,
    {models}[1 + intDiv(number, 3) % 4] AS Model,
    if(number % 5 = 0, 'text_completion', 'chat') AS Operation,
    multiIf(cityHash64(number, 4) % 1000 < 10, 'error', cityHash64(number, 4) % 1000 < 15, 'abort', 'ok') AS Status,
    multiIf(Status = 'error', 'error', Status = 'abort', 'abort', cityHash64(number, 5) % 4 = 0, 'length', 'stop')
        AS FinishReason,
    if(Status = 'error', 'EngineDeadError', '') AS ErrorType,
    toFloat32(multiIf(cityHash64(number, 10) % 100 < 85, randLogNormal(-1.9, 0.6),
                      cityHash64(number, 10) % 100 < 99, randLogNormal(0.0, 0.5),
                      0.5 / pow(greatest(randUniform(0, 1), 1e-6), 1 / 1.1))) AS TTFT,
    toFloat32(0.015 + randExponential(100)) AS TPOT,
    toFloat32(TTFT + TPOT * OutputTokens) AS E2E,
    toFloat32(least(0.002 / pow(greatest(randUniform(0, 1), 1e-9), 1 / 1.2), TTFT * 0.5)) AS Queue,
    toFloat32(greatest(TTFT - Queue, 0.001)) AS Prefill,
    toFloat32(E2E - TTFT) AS Decode,
    toUInt32(20 + cityHash64(number, 6) % 1980) AS InputTokens,
    toUInt32(1 + cityHash64(number, 7) % 512) AS OutputTokens,
    toUInt32(if(cityHash64(number, 8) % 3 = 0, intDiv(InputTokens, 128) * 128, 0)) AS CachedTokens,
    toFloat32(OutputTokens / E2E) AS TokensPerSecond,
    toUInt16(cityHash64(number, 9) % 200 = 0) AS Preemptions,
    '' AS LoraName,
    {_LEVEL.format(v='TTFT', a=0.2, b=0.5, c=1.0)} AS TTFTLevel,
    {_LEVEL.format(v='TPOT', a=0.03, b=0.06, c=0.1)} AS TPOTLevel,
    {_LEVEL.format(v='E2E', a=2.0, b=5.0, c=10.0)} AS E2ELevel,
    {_LEVEL.format(v='Queue', a=0.05, b=0.2, c=1.0)} AS QueueLevel
FROM numbers({offset}, {n})
"""


def fill_llm_requests(store, total: int, end: float, days: float = 7.0, chunk: int = 2_000_000) -> None:
    """Insert ``total`` synthetic rows into ``llm_requests`` of ``store``'s database in chunks of ``chunk`` rows."""
    for offset in range(0, total, chunk):
        store.command(llm_requests_insert_sql(min(chunk, total - offset), offset, total, end, days))


def _attr(key: str, expr: str) -> str:
    return f"'{key}', {expr}"


def otel_traces_from_llm_requests_sql(table: str = "otel_traces") -> str:
    """SQL inserting, for every ``llm_requests`` row, the spans our instrumentation emits for it into ``table``
    (otel_traces columns): one SERVER request span with the GenAI/vLLM attributes (~17) and a ``vllm.first_token``
    event, and three children ``queue`` / ``prefill`` / ``decode`` — i.e. the same requests as spans."""
    attrs = ", ".join([
        _attr(sc.OPERATION_NAME, "Operation"), _attr(sc.PROVIDER_NAME, "'vllm'"),
        _attr(sc.REQUEST_MODEL, "Model"), _attr(sc.RESPONSE_MODEL, "Model"),
        _attr(sc.RESPONSE_ID, "'cmpl-' || SpanId"), _attr(sc.VLLM_REQUEST_ID, "'cmpl-' || SpanId"),
        _attr(sc.REQUEST_MAX_TOKENS, "'512'"), _attr(sc.REQUEST_TEMPERATURE, "'0.7'"),
        _attr(sc.USAGE_INPUT_TOKENS, "toString(InputTokens)"), _attr(sc.USAGE_OUTPUT_TOKENS, "toString(OutputTokens)"),
        _attr(sc.USAGE_CACHE_READ_INPUT_TOKENS, "toString(CachedTokens)"),
        _attr(sc.RESPONSE_FINISH_REASONS, "'[\"' || FinishReason || '\"]'"),
        _attr(sc.VLLM_FINISH_REASON, "FinishReason"),
        _attr(sc.LATENCY_TTFT, "toString(TTFT)"), _attr(sc.LATENCY_TPOT, "toString(TPOT)"),
        _attr(sc.LATENCY_E2E, "toString(E2E)"), _attr(sc.LATENCY_QUEUE, "toString(Queue)"),
        _attr(sc.LATENCY_PREFILL, "toString(Prefill)"), _attr(sc.LATENCY_DECODE, "toString(Decode)"),
        _attr(sc.VLLM_TOKENS_PER_SECOND, "toString(TokensPerSecond)"), _attr(sc.VLLM_ENGINE, "'async_llm'"),
    ])
    resource = ("map('service.name', ServiceName, 'telemetry.sdk.language', 'python', 'telemetry.sdk.name', "
                "'opentelemetry', 'telemetry.sdk.version', '1.45.0', 'host.name', 'gpu-node-7')")
    return f"""
INSERT INTO {table}
SELECT
    if(k = 0, Timestamp, if(k = 1, Timestamp, if(k = 2, Timestamp + toIntervalNanosecond(toUInt64(Queue * 1e9)),
        Timestamp + toIntervalNanosecond(toUInt64(TTFT * 1e9))))) AS Timestamp,
    TraceId,
    if(k = 0, SpanId, lower(hex(cityHash64(SpanId, k)))) AS SpanId,
    if(k = 0, '', SpanId) AS ParentSpanId,
    '' AS TraceState,
    arrayElement(['chat ' || Model, 'queue', 'prefill', 'decode'], k + 1) AS SpanName,
    if(k = 0, 'Server', 'Internal') AS SpanKind,
    ServiceName,
    {resource} AS ResourceAttributes,
    'opentelemetry.instrumentation.vllm' AS ScopeName,
    '0.1.0' AS ScopeVersion,
    if(k = 0, map({attrs}), map()) AS SpanAttributes,
    toUInt64(arrayElement([E2E, Queue, Prefill, Decode], k + 1) * 1e9) AS Duration,
    if(Status = 'error', 'Error', 'Unset') AS StatusCode,
    '' AS StatusMessage,
    if(k = 0, [Timestamp + toIntervalNanosecond(toUInt64(TTFT * 1e9))], []) AS `Events.Timestamp`,
    if(k = 0, ['{sc.EVENT_FIRST_TOKEN}'], []) AS `Events.Name`,
    if(k = 0, [map()], []) AS `Events.Attributes`,
    [] AS `Links.TraceId`, [] AS `Links.SpanId`, [] AS `Links.TraceState`, [] AS `Links.Attributes`
FROM llm_requests ARRAY JOIN [0, 1, 2, 3] AS k
"""
