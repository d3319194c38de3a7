-- Analytics inside ClickHouse (issue 20): the performance-level thresholds the materialized views read at insert
-- time, so levels follow a threshold change without re-migrating. A sync (analytics/sync.py) writes a whole new set
-- under a new SetId (unique per writer); readers use the largest SetId, so two writers never mix their entries.
-- On a cluster each table is one replication group across every shard: every node derives with the same set.
--
-- llm_level_thresholds: the configured entries as configured (analytics.levels: span glob, metric, seconds;
-- Position = config order, the first match wins). Read by people and by the sync (is the stored set the config's?).
CREATE TABLE IF NOT EXISTS ${db}.llm_level_thresholds ${on_cluster} (
    SetId UInt64,
    Position UInt16,
    Span String,
    Metric LowCardinality(String),
    Seconds Float64,
    WrittenAt DateTime64(3) DEFAULT now64(3)
) ENGINE = ${global:ReplacingMergeTree}
ORDER BY (SetId, Position);

-- llm_level_lookup: the same set compiled per metric for the views (analytics/levels.py: compile_lookup), so that a
-- lookup is one hash lookup and at most four regex matches with constant patterns (evaluated once per distinct span
-- name of an insert block): ExactNames/ExactSeconds = every span name an entry names exactly, with the threshold the
-- first matching entry gives that name (fnmatch, in config order); Globs/GlobSeconds = the wildcard entries (RE2,
-- padded to 4) before the first `*`; Default = that `*` entry's seconds (0: none). One row per metric and set.
CREATE TABLE IF NOT EXISTS ${db}.llm_level_lookup ${on_cluster} (
    SetId UInt64,
    Metric LowCardinality(String),
    ExactNames Array(String),
    ExactSeconds Array(Float64),
    Globs Array(String),
    GlobSeconds Array(Float64),
    Default Float64
) ENGINE = ${global:ReplacingMergeTree}
ORDER BY (SetId, Metric);
