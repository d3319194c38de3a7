-- Read-side Distributed tables for a sharded cluster `llm`: database otel_all holds one Distributed table per table of
-- database otel (same names and columns), so Grafana's SQL runs unchanged with defaultDatabase otel_all.
-- Run once on any node after the collectors have migrated `otel` ON CLUSTER:
--   clickhouse-client --multiquery < deploy/scale-out/clickhouse/distributed.sql
CREATE DATABASE IF NOT EXISTS otel_all ON CLUSTER llm;
CREATE TABLE IF NOT EXISTS otel_all.otel_traces ON CLUSTER llm AS otel.otel_traces ENGINE = Distributed(llm, otel, otel_traces, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.otel_traces_trace_id_ts ON CLUSTER llm AS otel.otel_traces_trace_id_ts ENGINE = Distributed(llm, otel, otel_traces_trace_id_ts, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_gauge ON CLUSTER llm AS otel.otel_metrics_gauge ENGINE = Distributed(llm, otel, otel_metrics_gauge, rand());
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_sum ON CLUSTER llm AS otel.otel_metrics_sum ENGINE = Distributed(llm, otel, otel_metrics_sum, rand());
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_histogram ON CLUSTER llm AS otel.otel_metrics_histogram ENGINE = Distributed(llm, otel, otel_metrics_histogram, rand());
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_exponential_histogram ON CLUSTER llm AS otel.otel_metrics_exponential_histogram ENGINE = Distributed(llm, otel, otel_metrics_exponential_histogram, rand());
CREATE TABLE IF NOT EXISTS otel_all.llm_requests ON CLUSTER llm AS otel.llm_requests ENGINE = Distributed(llm, otel, llm_requests, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.llm_requests_1m ON CLUSTER llm AS otel.llm_requests_1m ENGINE = Distributed(llm, otel, llm_requests_1m, rand());
CREATE TABLE IF NOT EXISTS otel_all.llm_requests_1h ON CLUSTER llm AS otel.llm_requests_1h ENGINE = Distributed(llm, otel, llm_requests_1h, rand());
CREATE TABLE IF NOT EXISTS otel_all.llm_model_loads ON CLUSTER llm AS otel.llm_model_loads ENGINE = Distributed(llm, otel, llm_model_loads, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.llm_alerts ON CLUSTER llm AS otel.llm_alerts ENGINE = Distributed(llm, otel, llm_alerts, cityHash64(Fingerprint));
