"""OTLP receivers (gRPC and HTTP) and the shared request outcome logic."""
