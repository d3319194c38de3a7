-- The cluster-wide database otel_all of the scale-out example (docs/scale-out.md): one Distributed table per table of
-- database otel (same names and columns), for writes and reads. Run once on any node after
-- `vllm-otel migrate --cluster llm` set up `otel` ON CLUSTER (the compose overlay's `distributed` job does):
--   clickhouse-client --multiquery < deploy/scale-out/clickhouse/distributed.sql
-- - The OpenTelemetry Collectors insert into otel_all: traces are sharded by cityHash64(TraceId) (a trace, and so an
--   engine start's spans, stays on one shard), and each shard's local materialized views derive its rows.
-- - Grafana, `vllm-otel analyzer|stats|report|top --database otel_all` read (and the analyzer writes alerts) through
--   it: every query sees every shard.
-- - The small tables every node holds whole (one replication group across the cluster) go through cluster llm_one,
--   which asks one node.
CREATE DATABASE IF NOT EXISTS otel_all ON CLUSTER llm;
CREATE TABLE IF NOT EXISTS otel_all.otel_traces ON CLUSTER llm AS otel.otel_traces ENGINE = Distributed(llm, otel, otel_traces, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.otel_traces_trace_id_ts ON CLUSTER llm AS otel.otel_traces_trace_id_ts ENGINE = Distributed(llm, otel, otel_traces_trace_id_ts, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_gauge ON CLUSTER llm AS otel.otel_metrics_gauge ENGINE = Distributed(llm, otel, otel_metrics_gauge, rand());
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_sum ON CLUSTER llm AS otel.otel_metrics_sum ENGINE = Distributed(llm, otel, otel_metrics_sum, rand());
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_histogram ON CLUSTER llm AS otel.otel_metrics_histogram ENGINE = Distributed(llm, otel, otel_metrics_histogram, rand());
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_exponential_histogram ON CLUSTER llm AS otel.otel_metrics_exponential_histogram ENGINE = Distributed(llm, otel, otel_metrics_exponential_histogram, rand());
CREATE TABLE IF NOT EXISTS otel_all.otel_metrics_summary ON CLUSTER llm AS otel.otel_metrics_summary ENGINE = Distributed(llm, otel, otel_metrics_summary, rand());
CREATE TABLE IF NOT EXISTS otel_all.llm_requests ON CLUSTER llm AS otel.llm_requests ENGINE = Distributed(llm, otel, llm_requests, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.span_levels ON CLUSTER llm AS otel.span_levels ENGINE = Distributed(llm, otel, span_levels, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.llm_requests_1m ON CLUSTER llm AS otel.llm_requests_1m ENGINE = Distributed(llm, otel, llm_requests_1m, rand());
CREATE TABLE IF NOT EXISTS otel_all.llm_requests_5m ON CLUSTER llm AS otel.llm_requests_5m ENGINE = Distributed(llm, otel, llm_requests_5m, rand());
CREATE TABLE IF NOT EXISTS otel_all.llm_requests_1h ON CLUSTER llm AS otel.llm_requests_1h ENGINE = Distributed(llm, otel, llm_requests_1h, rand());
CREATE TABLE IF NOT EXISTS otel_all.llm_startup_spans ON CLUSTER llm AS otel.llm_startup_spans ENGINE = Distributed(llm, otel, llm_startup_spans, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.llm_model_loads ON CLUSTER llm AS otel.llm_model_loads ENGINE = Distributed(llm, otel, llm_model_loads, cityHash64(TraceId));
CREATE TABLE IF NOT EXISTS otel_all.llm_alerts ON CLUSTER llm AS otel.llm_alerts ENGINE = Distributed(llm, otel, llm_alerts, cityHash64(Fingerprint));
CREATE TABLE IF NOT EXISTS otel_all.llm_baselines ON CLUSTER llm AS otel.llm_baselines ENGINE = Distributed(llm, otel, llm_baselines, rand());
CREATE TABLE IF NOT EXISTS otel_all.llm_level_thresholds ON CLUSTER llm AS otel.llm_level_thresholds ENGINE = Distributed(llm_one, otel, llm_level_thresholds);
CREATE TABLE IF NOT EXISTS otel_all.llm_level_lookup ON CLUSTER llm AS otel.llm_level_lookup ENGINE = Distributed(llm_one, otel, llm_level_lookup);
CREATE TABLE IF NOT EXISTS otel_all.vllm_otel_settings ON CLUSTER llm AS otel.vllm_otel_settings ENGINE = Distributed(llm_one, otel, vllm_otel_settings);
CREATE TABLE IF NOT EXISTS otel_all.vllm_otel_leases ON CLUSTER llm AS otel.vllm_otel_leases ENGINE = Distributed(llm_one, otel, vllm_otel_leases);
CREATE TABLE IF NOT EXISTS otel_all.schema_migrations ON CLUSTER llm AS otel.schema_migrations ENGINE = Distributed(llm_one, otel, schema_migrations);
