"""The one place that knows OTLP: decoding (protobuf, JSON), validation and conversion to ClickHouse rows."""
