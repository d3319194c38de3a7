"""Streaming chat workload against an OpenAI-compatible server, measured from the client side.

Every request carries a W3C ``traceparent`` header with a fresh trace id, so the server-side span (its parent is that
context) and the client measurement join on the trace id.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx
from openai import AsyncOpenAI

#: A small fixed set of real prompts (varied lengths, so prefill differs between requests).
PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Explain in two sentences what a KV cache is in a transformer.",
    "Write a haiku about GPUs.",
    "List three tips for writing clear documentation.",
    "Why is the sky blue? Answer briefly.",
    "Summarize the benefits of continuous batching for LLM serving in one paragraph.",
    "Translate 'good morning, how are you?' into Spanish and German.",
    "Give me a short recipe for pancakes.",
)


@dataclass
class ClientResult:
    """One request as the client saw it. Times are seconds (``time.perf_counter`` differences)."""

    index: int
    trace_id: str  # 32 lowercase hex chars, the trace the server span joins
    ok: bool
    client_ttft_s: float | None  # request sent -> first content chunk received
    client_e2e_s: float
    chunks: int  # content chunks received
    output_tokens: int | None  # usage.completion_tokens reported in the final chunk
    input_tokens: int | None
    finish_reason: str | None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def new_traceparent() -> tuple[str, str]:
    """Return ``(trace_id_hex, traceparent_header)`` for a sampled root context (W3C Trace Context)."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


async def _one_request(
    client: AsyncOpenAI, model: str, index: int, prompt: str, max_tokens: int, temperature: float
) -> ClientResult:
    trace_id, traceparent = new_traceparent()
    t0 = time.perf_counter()
    ttft = None
    chunks = 0
    usage = None
    finish = None
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"traceparent": traceparent},
        )
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    chunks += 1
                if choice.finish_reason:
                    finish = choice.finish_reason
        return ClientResult(
            index, trace_id, True, ttft, time.perf_counter() - t0, chunks,
            usage.completion_tokens if usage else None, usage.prompt_tokens if usage else None, finish,
        )
    except Exception as exc:  # noqa: BLE001 - one failed request is a result, not a crash of the workload
        return ClientResult(index, trace_id, False, ttft, time.perf_counter() - t0, chunks, None, None, None,
                            f"{type(exc).__name__}: {exc}")


async def run_workload_async(
    base_url: str,
    model: str,
    *,
    requests: int,
    concurrency: int,
    max_tokens: int = 64,
    temperature: float = 0.7,
    prompts: tuple[str, ...] = PROMPTS,
    on_done: Callable[[ClientResult], None] | None = None,
) -> list[ClientResult]:
    """Send ``requests`` streaming chat requests, at most ``concurrency`` in flight; results in request order."""
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be >= 1")
    sem = asyncio.Semaphore(concurrency)
    http = httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=httpx.Limits(max_connections=concurrency + 4))
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="EMPTY", http_client=http, max_retries=0)

    async def guarded(i: int) -> ClientResult:
        async with sem:
            result = await _one_request(client, model, i, prompts[i % len(prompts)], max_tokens, temperature)
        if on_done is not None:
            on_done(result)
        return result

    try:
        return list(await asyncio.gather(*(guarded(i) for i in range(requests))))
    finally:
        await client.close()


def run_workload(base_url: str, model: str, **kwargs) -> list[ClientResult]:
    """Synchronous wrapper of :func:`run_workload_async` (same arguments)."""
    return asyncio.run(run_workload_async(base_url, model, **kwargs))
