-- Settings of this database that every reader must agree on, as (Key, Value) rows; the newest row of a key wins.
-- `vllm-otel migrate` records the schema profile here (store/schema.py: which tables the contrib exporter writes,
-- Map or JSON attributes), so stats, alerts, views and the analyzer read the same tables the materialized views
-- were installed on. On a cluster one replication group spans every shard (${global:...}).
CREATE TABLE IF NOT EXISTS ${db}.vllm_otel_settings ${on_cluster} (
    Key String,
    Value String,
    UpdatedAt DateTime64(3)
) ENGINE = ${global:ReplacingMergeTree:UpdatedAt}
ORDER BY Key;
