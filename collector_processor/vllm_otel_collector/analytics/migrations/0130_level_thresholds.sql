-- Analytics inside ClickHouse (issue 20): the performance-level thresholds the materialized views read at insert
-- time, so levels follow a threshold change without re-migrating. One row per configured entry
-- (analytics.levels: span glob, metric, seconds); Position is the config order (the first match wins); Pattern is
-- the glob as an anchored RE2 regex (analytics/levels.py: glob_regex). A sync writes a whole new set under a new
-- SetId (unique per writer); readers use the set with the largest SetId, so two writers never mix their entries.
-- On a cluster one replication group spans every shard: every node derives with the same thresholds.
CREATE TABLE IF NOT EXISTS ${db}.llm_level_thresholds ${on_cluster} (
    SetId UInt64,
    Position UInt16,
    Span String,
    Pattern String,
    Metric LowCardinality(String),
    Seconds Float64,
    WrittenAt DateTime64(3) DEFAULT now64(3)
) ENGINE = ${global:ReplacingMergeTree}
ORDER BY (SetId, Position);
