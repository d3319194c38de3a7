"""vLLM's OpenAI server with FastAPI instrumented *without* the ASGI ``http send`` / ``http receive`` spans.

How a user trims a full ``opentelemetry-bootstrap -a install`` (docs/instrumentation.md): turn the auto-loaded FastAPI
instrumentor off (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi``) and instrument FastAPI in code before the app
is built, with ``exclude_spans``. Run under ``opentelemetry-instrument`` like the server module itself::

    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi opentelemetry-instrument python fastapi_trimmed_server.py --model DIR
"""

import runpy
import sys

if __name__ == "__main__":
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor().instrument(exclude_spans=["send", "receive"])
    sys.argv[0] = "vllm.entrypoints.openai.api_server"
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)
