-- Leases (store/lease.py): which process runs the periodic jobs of a database (alert evaluation, retention) when
-- several could — `vllm-otel analyzer` replicas, or an analyzer beside a collector. A process claims a lease by
-- inserting a row with the next Term; the earliest claim of the newest term holds it (ties: the smaller Holder),
-- and keeps it by inserting renewals; a lease not renewed for its TTL can be claimed by anyone. Times are the
-- claimants' clocks (unix ms). On a cluster one replication group spans every shard.
CREATE TABLE IF NOT EXISTS ${db}.vllm_otel_leases ${on_cluster} (
    Name LowCardinality(String),
    Term UInt64,
    Holder String,
    At DateTime64(3),
    TtlSeconds Float64
) ENGINE = ${global:MergeTree}
ORDER BY (Name, Term, At, Holder)
TTL toDateTime(At) + toIntervalDay(7);
