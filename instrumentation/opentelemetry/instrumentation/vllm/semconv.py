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

# ---- Latencies (seconds), vLLM native tracing names ---------------------------------------------------------------
LATENCY_TTFT: Final = "gen_ai.latency.time_to_first_token"
LATENCY_E2E: Final = "gen_ai.latency.e2e"
LATENCY_QUEUE: Final = "gen_ai.latency.time_in_queue"
LATENCY_PREFILL: Final = "gen_ai.latency.time_in_model_prefill"
LATENCY_DECODE: Final = "gen_ai.latency.time_in_model_decode"
LATENCY_INFERENCE: Final = "gen_ai.latency.time_in_model_inference"
#: TPOT = decode time / (output_tokens - 1); absent when output_tokens < 2.
LATENCY_TPOT: Final = "gen_ai.latency.time_per_output_token"
#: vLLM native span's request id attribute (we also read it from native spans).
NATIVE_REQUEST_ID: Final = "gen_ai.request.id"
NATIVE_SPAN_NAME: Final = "llm_request"
NATIVE_USAGE_PROMPT_TOKENS: Final = _ga.GEN_AI_USAGE_PROMPT_TOKENS
NATIVE_USAGE_COMPLETION_TOKENS: Final = _ga.GEN_AI_USAGE_COMPLETION_TOKENS

# ---- vLLM-specific request attributes -----------------------------------------------------------------------------
VLLM_REQUEST_ID: Final = "vllm.request.id"
#: One of FINISH_* below; "abort" for client disconnect/cancel, "timeout" for zombies ended by the instrumentation.
VLLM_FINISH_REASON: Final = "vllm.finish_reason"
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

FINISH_STOP: Final = "stop"
FINISH_LENGTH: Final = "length"
FINISH_ABORT: Final = "abort"
FINISH_ERROR: Final = "error"
FINISH_TIMEOUT: Final = "timeout"

# ---- Events and child spans ---------------------------------------------------------------------------------------
EVENT_FIRST_TOKEN: Final = "gen_ai.first_token"
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
LOAD_CUDA_GRAPH_SECONDS: Final = "vllm.cuda_graph.capture_seconds"
LOAD_WARMUP_SECONDS: Final = "vllm.warmup.seconds"
LOAD_COLD_START_SECONDS: Final = "vllm.cold_start_seconds"  # process start -> ready to serve, on the root span
LOAD_TOTAL_SECONDS: Final = "vllm.load.total_seconds"

# ---- Metrics ------------------------------------------------------------------------------------------------------
METRIC_TTFT: Final = _gm.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
METRIC_TPOT: Final = _gm.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN
METRIC_REQUEST_DURATION: Final = _gm.GEN_AI_SERVER_REQUEST_DURATION
METRIC_TOKEN_USAGE: Final = _gm.GEN_AI_CLIENT_TOKEN_USAGE.replace("client", "server")  # gen_ai.server.token.usage
METRIC_REQUESTS: Final = "vllm.requests"  # counter by vllm.finish_reason
METRIC_KV_CACHE_USAGE: Final = "vllm.kv_cache.usage"  # ratio 0..1
METRIC_RUNNING: Final = "vllm.requests.running"
METRIC_WAITING: Final = "vllm.requests.waiting"
METRIC_PREEMPTIONS: Final = "vllm.preemptions"
METRIC_PREFIX_CACHE_QUERIES: Final = "vllm.prefix_cache.queries"
METRIC_PREFIX_CACHE_HITS: Final = "vllm.prefix_cache.hits"
METRIC_ZOMBIES: Final = "vllm.requests.timed_out"
METRIC_HOOK_ERRORS: Final = "vllm_otel.instrumentation.errors"
METRIC_GPU_UTILIZATION: Final = "hw.gpu.utilization"
METRIC_GPU_MEMORY_USED: Final = "hw.gpu.memory.usage"
METRIC_PROCESS_CPU: Final = "process.cpu.utilization"
METRIC_PROCESS_RSS: Final = "process.memory.usage"
