"""Benchmarks of vllm-otel (issue 7): ``python -m bench.run [--smoke] [--only NAME ...]``.

Each benchmark module exposes ``run(smoke: bool, workdir: Path) -> dict`` and is executed in its own process by
:mod:`bench.run` (chDB allows one data path per process; vLLM engines must not leak between benchmarks). Results land in
``bench/results/<name>.json``; :mod:`bench.report` turns them into PNGs and ``docs/BENCHMARKS.md``.
"""
