"""Every span, event, attribute and metric name vllm-otel emits or reads — the one place they are spelled.

This module is the contract between the instrumentation (which writes these names) and the collector's processor
(which reads them into ``llm_requests`` / ``llm_model_loads``). It imports nothing from vLLM.

Sources:
- GenAI semantic conventions (opentelemetry-semantic-conventions, ``gen_ai_attributes`` / ``gen_ai_metrics``).
- Latency attributes use vLLM's own native tracing names (``vllm/tracing``: ``gen_ai.latency.*``), so the collector
  derives the same rows from vLLM's native ``llm_request`` spans as from ours. All latencies are **seconds** (float).
- Anything vLLM-specific lives under ``vllm.*``.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _ga
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _gm
from opentelemetry.semconv._incubating.metrics import hw_metrics as _hw
from opentelemetry.semconv._incubating.metrics import process_metrics as _pm

# ---- GenAI semconv attributes -------------------------------------------------------------------------------------
OPERATION_NAME: Final = _ga.GEN_AI_OPERATION_NAME  # "chat" | "text_completion"
PROVIDER_NAME: Final = _ga.GEN_AI_PROVIDER_NAME  # "vllm"
REQUEST_MODEL: Final = _ga.GEN_AI_REQUEST_MODEL
RESPONSE_MODEL: Final = _ga.GEN_AI_RESPONSE_MODEL
REQUEST_MAX_TOKENS: Final = _ga.GEN_AI_REQUEST_MAX_TOKENS
REQUEST_TEMPERATURE: Final = _ga.GEN_AI_REQUEST_TEMPERATURE
REQUEST_TOP_P: Final = _ga.GEN_AI_REQUEST_TOP_P
REQUEST_TOP_K: Final = _ga.GEN_AI_REQUEST_TOP_K
REQUEST_SEED: Final = _ga.GEN_AI_REQUEST_SEED
REQUEST_CHOICE_COUNT: Final = _ga.GEN_AI_REQUEST_CHOICE_COUNT  # n
REQUEST_STREAM: Final = _ga.GEN_AI_REQUEST_STREAM
RESPONSE_ID: Final = _ga.GEN_AI_RESPONSE_ID
RESPONSE_FINISH_REASONS: Final = _ga.GEN_AI_RESPONSE_FINISH_REASONS  # string[]
USAGE_INPUT_TOKENS: Final = _ga.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS: Final = _ga.GEN_AI_USAGE_OUTPUT_TOKENS
USAGE_CACHE_READ_INPUT_TOKENS: Final = _ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS  # prefix-cache hits
TOKEN_TYPE: Final = _ga.GEN_AI_TOKEN_TYPE  # metric attribute: "input" | "output"
INPUT_MESSAGES: Final = _ga.GEN_AI_INPUT_MESSAGES  # opt-in content capture only
OUTPUT_MESSAGES: Final = _ga.GEN_AI_OUTPUT_MESSAGES  # opt-in content capture only
ERROR_TYPE: Final = "error.type"

PROVIDER_VLLM: Final = "vllm"
OP_CHAT: Final = "chat"
OP_TEXT_COMPLETION: Final = "text_completion"

# ---- Latencies (seconds) ------------------------------------------------------------------------------------------
# Not defined by the GenAI conventions, hence vllm.*; same definitions as vLLM's native tracing (``vllm/tracing``
# ``SpanAttributes.GEN_AI_LATENCY_*``), whose names (``gen_ai.latency.*``, NATIVE_LATENCY_* below) the collector still
# reads from vLLM's native ``llm_request`` spans.
LATENCY_TTFT: Final = "vllm.latency.time_to_first_token"
LATENCY_E2E: Final = "vllm.latency.e2e"
LATENCY_QUEUE: Final = "vllm.latency.time_in_queue"
LATENCY_PREFILL: Final = "vllm.latency.time_in_model_prefill"
LATENCY_DECODE: Final = "vllm.latency.time_in_model_decode"
LATENCY_INFERENCE: Final = "vllm.latency.time_in_model_inference"
#: TPOT = decode time / (output_tokens - 1); absent when output_tokens < 2 (vLLM's native span has no TPOT).
LATENCY_TPOT: Final = "vllm.latency.time_per_output_token"
NATIVE_LATENCY_TTFT: Final = "gen_ai.latency.time_to_first_token"
NATIVE_LATENCY_E2E: Final = "gen_ai.latency.e2e"
NATIVE_LATENCY_QUEUE: Final = "gen_ai.latency.time_in_queue"
NATIVE_LATENCY_PREFILL: Final = "gen_ai.latency.time_in_model_prefill"
NATIVE_LATENCY_DECODE: Final = "gen_ai.latency.time_in_model_decode"
NATIVE_LATENCY_INFERENCE: Final = "gen_ai.latency.time_in_model_inference"
#: vLLM native span's request id attribute (we also read it from native spans).
NATIVE_REQUEST_ID: Final = "gen_ai.request.id"
NATIVE_SPAN_NAME: Final = "llm_request"
NATIVE_USAGE_PROMPT_TOKENS: Final = _ga.GEN_AI_USAGE_PROMPT_TOKENS
NATIVE_USAGE_COMPLETION_TOKENS: Final = _ga.GEN_AI_USAGE_COMPLETION_TOKENS

# ---- vLLM-specific request attributes -----------------------------------------------------------------------------
VLLM_REQUEST_ID: Final = "vllm.request.id"
#: One of FINISH_* below; "abort" for client disconnect/cancel, "timeout" for zombies ended by the instrumentation.
VLLM_FINISH_REASON: Final = "vllm.finish_reason"
#: Attribute keys that make a span a request span for the collector: ours, or vLLM's native llm_request.
REQUEST_SPAN_KEYS: Final = (VLLM_FINISH_REASON, LATENCY_E2E, NATIVE_LATENCY_E2E)
VLLM_NUM_PREEMPTIONS: Final = "vllm.request.num_preemptions"
VLLM_TOKENS_PER_SECOND: Final = "vllm.request.output_tokens_per_second"  # output tokens / e2e seconds
VLLM_LORA_NAME: Final = "vllm.lora.name"
VLLM_ENGINE: Final = "vllm.engine"  # "async_llm" | "llm_engine"
#: Prompt tokens by source (vLLM's PromptTokenStats sources), set once prefill finished; they add up to
#: gen_ai.usage.input_tokens, and local + external = gen_ai.usage.cache_read.input_tokens.
VLLM_PROMPT_TOKENS_COMPUTED: Final = "vllm.request.prompt_tokens.computed"
VLLM_PROMPT_TOKENS_LOCAL_CACHE: Final = "vllm.request.prompt_tokens.local_cache_hit"
VLLM_PROMPT_TOKENS_EXTERNAL_CACHE: Final = "vllm.request.prompt_tokens.external_kv_transfer"
#: Whether the request got past prefill (false for a request aborted/failed while queued or prefilling).
VLLM_PREFILL_COMPLETED: Final = "vllm.request.prefill_completed"
#: Speculative decoding, per request (all choices), when vLLM reports per-request spec-decode stats.
VLLM_SPEC_DRAFT_TOKENS: Final = "vllm.request.spec_decode.draft_tokens"
VLLM_SPEC_ACCEPTED_TOKENS: Final = "vllm.request.spec_decode.accepted_tokens"
#: Engine state when the request arrived (read at add time from the scheduler stats vLLM last delivered to this
#: process): requests running and waiting in the scheduler, and the KV-cache usage as a fraction 0..1. Absent when
#: vLLM had not delivered scheduler stats yet (never a guessed 0).
VLLM_ARRIVAL_RUNNING: Final = "vllm.request.arrival.num_requests_running"
VLLM_ARRIVAL_WAITING: Final = "vllm.request.arrival.num_requests_waiting"
VLLM_ARRIVAL_KV_CACHE_USAGE: Final = "vllm.request.arrival.kv_cache_usage"

FINISH_STOP: Final = "stop"
FINISH_LENGTH: Final = "length"
FINISH_ABORT: Final = "abort"
FINISH_ERROR: Final = "error"
FINISH_TIMEOUT: Final = "timeout"

# ---- Events and child spans ---------------------------------------------------------------------------------------
EVENT_FIRST_TOKEN: Final = "vllm.first_token"  # no GenAI convention defines a first-token event
SPAN_QUEUE: Final = "queue"
SPAN_PREFILL: Final = "prefill"
SPAN_DECODE: Final = "decode"

# ---- Model load (one trace per engine start) ----------------------------------------------------------------------
#: Root span name we create on vLLM versions without native startup spans; vLLM ≥0.32's own root is "Overall Loading".
SPAN_MODEL_LOAD: Final = "vllm.model_load"
NATIVE_SPAN_MODEL_LOAD_ROOT: Final = "Overall Loading"
MODEL_LOAD_ROOT_NAMES: Final = (SPAN_MODEL_LOAD, NATIVE_SPAN_MODEL_LOAD_ROOT)
LOAD_MODEL_NAME: Final = REQUEST_MODEL
LOAD_MODEL_PATH: Final = "vllm.model.path"
LOAD_DTYPE: Final = "vllm.model.dtype"
LOAD_QUANTIZATION: Final = "vllm.model.quantization"
LOAD_TP_SIZE: Final = "vllm.parallel.tensor_parallel_size"
LOAD_PP_SIZE: Final = "vllm.parallel.pipeline_parallel_size"
LOAD_DEVICE: Final = "vllm.device"
LOAD_WEIGHTS_BYTES: Final = "vllm.load.weights_bytes"
LOAD_WEIGHTS_SECONDS: Final = "vllm.load.weights_seconds"
LOAD_DOWNLOAD_SECONDS: Final = "vllm.load.download_seconds"
LOAD_MEMORY_BEFORE: Final = "vllm.memory.before_bytes"
LOAD_MEMORY_AFTER: Final = "vllm.memory.after_bytes"
LOAD_MEMORY_PEAK: Final = "vllm.memory.peak_bytes"
LOAD_KV_BLOCKS: Final = "vllm.kv_cache.num_blocks"
LOAD_KV_BYTES: Final = "vllm.kv_cache.bytes"
LOAD_COMPILE_SECONDS: Final = "vllm.compile.seconds"
LOAD_COMPILE_CACHE_HIT: Final = "vllm.compile.cache_hit"  # bool
#: When vLLM tried a compile cache (torch.compile cache dir, AOT artifact) and fell back to compiling: where it
#: looked and vLLM's own reason, verbatim (e.g. "'function' object has no attribute 'finalize_loading'").
LOAD_COMPILE_CACHE_PATH: Final = "vllm.compile.cache_path"
LOAD_COMPILE_CACHE_FALLBACK_REASON: Final = "vllm.compile.cache_fallback_reason"
LOAD_CUDA_GRAPH_SECONDS: Final = "vllm.cuda_graph.capture_seconds"
LOAD_WARMUP_SECONDS: Final = "vllm.warmup.seconds"
LOAD_COLD_START_SECONDS: Final = "vllm.cold_start_seconds"  # process start -> ready to serve, on the root span
LOAD_TOTAL_SECONDS: Final = "vllm.load.total_seconds"

# ---- Metrics: request path (one point per client request, recorded by :mod:`.record`) -----------------------------
#: GenAI semconv server metrics (semantic-conventions-genai ``model/gen-ai/metrics.yaml``), seconds, with the
#: conventions' bucket advisories (see :mod:`.instruments`).
METRIC_TTFT: Final = _gm.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
METRIC_TPOT: Final = _gm.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN
METRIC_REQUEST_DURATION: Final = _gm.GEN_AI_SERVER_REQUEST_DURATION
#: Tokens per request by ``gen_ai.token.type``. The conventions define token usage for clients only
#: (``gen_ai.client.token.usage``); the server-side histogram is ours, so it lives under ``vllm.*``.
METRIC_TOKEN_USAGE: Final = "vllm.request.token.usage"
METRIC_REQUESTS: Final = "vllm.requests"  # counter by vllm.finish_reason (client requests, incl. abort/timeout/error)
METRIC_ZOMBIES: Final = "vllm.requests.timed_out"
METRIC_HOOK_ERRORS: Final = "vllm_otel.instrumentation.errors"

# ---- Metrics: vLLM's engine metric set, mirrored from its stat-logger stats (:mod:`.engine_metrics`) ------------
# One OTel instrument per Prometheus metric of ``vllm/v1/metrics/loggers.py`` (name in the trailing comment), same
# meaning and unit; attributes VLLM_ENGINE_INDEX + REQUEST_MODEL (+ the label below). vLLM's TTFT, e2e latency and
# per-request TPOT histograms map to the GenAI semconv metrics above (recorded per client request).
VLLM_ENGINE_INDEX: Final = "vllm.engine.index"  # data-parallel engine rank (Prometheus label "engine")
VLLM_WAITING_REASON: Final = "vllm.waiting.reason"  # "capacity" | "deferred"
VLLM_KV_FETCH_STAGE: Final = "vllm.kv_fetch.stage"  # "waiting_to_start" | "in_progress" | "completed_waiting"
VLLM_SLEEP_STATE: Final = "vllm.sleep_state"  # "awake" | "weights_offloaded" | "discard_all"
VLLM_PROMPT_SOURCE: Final = "vllm.prompt_tokens.source"  # "local_compute" | "local_cache_hit" | "external_kv_transfer"
VLLM_CACHE_SOURCE: Final = "vllm.cache.source"  # "device" | "host" | "p2p" | "disk" | "external_unspecified"
VLLM_ADMISSION_REASON: Final = "vllm.admission.reason"  # "max_num_queued_reqs" | "max_num_queued_tokens"
VLLM_WATERMARK_STATUS: Final = "vllm.watermark.status"  # "watermarked" | "skipped" | "not_watermarked"
VLLM_SPEC_POSITION: Final = "vllm.spec_decode.position"  # draft position, int from 0
VLLM_CACHE_CONFIG_PREFIX: Final = "vllm.cache_config."  # + CacheConfig field, on METRIC_CACHE_CONFIG_INFO

# gauges (latest value per engine)
METRIC_RUNNING: Final = "vllm.requests.running"  # vllm:num_requests_running
METRIC_WAITING: Final = "vllm.requests.waiting"  # vllm:num_requests_waiting (capacity + deferred)
METRIC_WAITING_BY_REASON: Final = "vllm.requests.waiting.by_reason"  # vllm:num_requests_waiting_by_reason
METRIC_KV_FETCH_BY_STAGE: Final = "vllm.requests.kv_fetch.by_stage"  # vllm:num_requests_kv_fetch_by_stage
METRIC_SLEEP_STATE: Final = "vllm.engine.sleep_state"  # vllm:engine_sleep_state
METRIC_KV_CACHE_USAGE: Final = "vllm.kv_cache.usage"  # vllm:kv_cache_usage_perc (ratio 0..1)
METRIC_LORA_RUNNING: Final = "vllm.lora.requests.running"  # vllm:lora_requests_info running_lora_adapters
METRIC_LORA_WAITING: Final = "vllm.lora.requests.waiting"  # vllm:lora_requests_info waiting_lora_adapters
METRIC_LORA_MAX: Final = "vllm.lora.max_adapters"  # vllm:lora_requests_info max_lora
METRIC_CACHE_CONFIG_INFO: Final = "vllm.cache_config.info"  # vllm:cache_config_info (value 1)
# counters (cumulative)
METRIC_PREFIX_CACHE_QUERIES: Final = "vllm.prefix_cache.queries"  # vllm:prefix_cache_queries
METRIC_PREFIX_CACHE_HITS: Final = "vllm.prefix_cache.hits"  # vllm:prefix_cache_hits
METRIC_EXTERNAL_PREFIX_CACHE_QUERIES: Final = "vllm.prefix_cache.external.queries"  # vllm:external_prefix_cache_queries
METRIC_EXTERNAL_PREFIX_CACHE_HITS: Final = "vllm.prefix_cache.external.hits"  # vllm:external_prefix_cache_hits
METRIC_MM_CACHE_QUERIES: Final = "vllm.mm_cache.queries"  # vllm:mm_cache_queries
METRIC_MM_CACHE_HITS: Final = "vllm.mm_cache.hits"  # vllm:mm_cache_hits
METRIC_PREEMPTIONS: Final = "vllm.preemptions"  # vllm:num_preemptions
METRIC_PROMPT_TOKENS: Final = "vllm.prompt_tokens"  # vllm:prompt_tokens
METRIC_PROMPT_TOKENS_BY_SOURCE: Final = "vllm.prompt_tokens.by_source"  # vllm:prompt_tokens_by_source
METRIC_PROMPT_TOKENS_CACHED: Final = "vllm.prompt_tokens.cached"  # vllm:prompt_tokens_cached
METRIC_PROMPT_TOKENS_CACHED_BY_SOURCE: Final = "vllm.prompt_tokens.cached.by_source"  # ..._cached_by_source
METRIC_GENERATION_TOKENS: Final = "vllm.generation_tokens"  # vllm:generation_tokens
METRIC_REQUEST_SUCCESS: Final = "vllm.request.success"  # vllm:request_success (per sequence, by finish reason)
METRIC_ADMISSION_REJECTIONS: Final = "vllm.admission.rejections"  # vllm:admission_rejections
METRIC_CORRUPTED_REQUESTS: Final = "vllm.requests.corrupted"  # vllm:corrupted_requests
METRIC_WATERMARK_REQUESTS: Final = "vllm.requests.watermark"  # vllm:watermark_requests
METRIC_SPEC_DRAFTS: Final = "vllm.spec_decode.drafts"  # vllm:spec_decode_num_drafts
METRIC_SPEC_DRAFT_TOKENS: Final = "vllm.spec_decode.draft_tokens"  # vllm:spec_decode_num_draft_tokens
METRIC_SPEC_ACCEPTED_TOKENS: Final = "vllm.spec_decode.accepted_tokens"  # vllm:spec_decode_num_accepted_tokens
METRIC_SPEC_ACCEPTED_PER_POS: Final = "vllm.spec_decode.accepted_tokens.by_position"  # ..._per_pos
METRIC_PERF_FLOPS: Final = "vllm.perf.estimated_flops_per_gpu"  # vllm:estimated_flops_per_gpu_total
METRIC_PERF_READ_BYTES: Final = "vllm.perf.estimated_read_bytes_per_gpu"  # vllm:estimated_read_bytes_per_gpu_total
METRIC_PERF_WRITE_BYTES: Final = "vllm.perf.estimated_write_bytes_per_gpu"  # ..._write_bytes_per_gpu_total
METRIC_ENGINE_STATS_DROPPED: Final = "vllm_otel.engine_stats.dropped"  # ours: engine steps dropped (queue full)
METRIC_ENGINE_VALUES_REJECTED: Final = "vllm_otel.engine_stats.rejected_values"  # ours: NaN/±Inf/negative values
VLLM_OTEL_METRIC: Final = "vllm_otel.metric"  # attribute of METRIC_ENGINE_VALUES_REJECTED: the metric it was for
# histograms
METRIC_REQ_PROMPT_TOKENS: Final = "vllm.request.prompt_tokens"  # vllm:request_prompt_tokens
METRIC_REQ_GENERATION_TOKENS: Final = "vllm.request.generation_tokens"  # vllm:request_generation_tokens
METRIC_ITERATION_TOKENS: Final = "vllm.iteration.tokens"  # vllm:iteration_tokens_total
METRIC_REQ_MAX_GENERATION_TOKENS: Final = "vllm.request.max_num_generation_tokens"  # ..._max_num_generation_tokens
METRIC_REQ_PARAMS_N: Final = "vllm.request.params.n"  # vllm:request_params_n
METRIC_REQ_PARAMS_MAX_TOKENS: Final = "vllm.request.params.max_tokens"  # vllm:request_params_max_tokens
METRIC_INTER_TOKEN_LATENCY: Final = "vllm.inter_token_latency"  # vllm:inter_token_latency_seconds
METRIC_REQ_QUEUE_TIME: Final = "vllm.request.queue_time"  # vllm:request_queue_time_seconds
METRIC_REQ_INFERENCE_TIME: Final = "vllm.request.inference_time"  # vllm:request_inference_time_seconds
METRIC_REQ_PREFILL_TIME: Final = "vllm.request.prefill_time"  # vllm:request_prefill_time_seconds
METRIC_REQ_DECODE_TIME: Final = "vllm.request.decode_time"  # vllm:request_decode_time_seconds
METRIC_REQ_PREEMPTIONS: Final = "vllm.request.preemptions"  # vllm:request_num_preemptions
METRIC_REQ_PREFILL_KV_COMPUTED: Final = "vllm.request.prefill_kv_computed_tokens"  # ..._prefill_kv_computed_tokens
METRIC_KV_BLOCK_LIFETIME: Final = "vllm.kv_block.lifetime"  # vllm:kv_block_lifetime_seconds
METRIC_KV_BLOCK_IDLE_BEFORE_EVICT: Final = "vllm.kv_block.idle_before_evict"  # ..._idle_before_evict_seconds
METRIC_KV_BLOCK_REUSE_GAP: Final = "vllm.kv_block.reuse_gap"  # vllm:kv_block_reuse_gap_seconds

# ---- Metrics: process and GPU (semconv system metrics) ------------------------------------------------------------
METRIC_GPU_UTILIZATION: Final = _hw.HW_GPU_UTILIZATION  # gauge, 1
METRIC_GPU_MEMORY_USED: Final = _hw.HW_GPU_MEMORY_USAGE  # updowncounter, By
METRIC_PROCESS_CPU: Final = _pm.PROCESS_CPU_UTILIZATION  # gauge, 1
METRIC_PROCESS_RSS: Final = _pm.PROCESS_MEMORY_USAGE  # updowncounter, By
PROCESS_PID: Final = "process.pid"
PROCESS_COMMAND: Final = "process.command"  # semconv: the command name (here the process title, VLLM::EngineCore)
HW_ID: Final = "hw.id"
