"""Benchmarks of the collector and ClickHouse: ingest, queries, storage, the analytics views at insert."""
