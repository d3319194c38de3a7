"""Benchmarks of the instrumentation: overhead offline and served, the SDK floor, the engine-metric path, TTFT truth."""
