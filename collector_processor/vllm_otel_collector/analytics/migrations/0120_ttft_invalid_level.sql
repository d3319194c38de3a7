-- Reliability (issue 12): a request whose TTFT exceeds its E2E (inconsistent timing) is stored with TTFT NULL and
-- TTFTLevel 'INVALID' (analytics/derive.py), so it is flagged and never averaged into a rollup. Adding an Enum8 value
-- is a metadata-only change; re-running it is a no-op.
ALTER TABLE ${db}.llm_requests ${on_cluster}
    MODIFY COLUMN TTFTLevel Enum8('NONE' = 0, 'EXCELLENT' = 1, 'GOOD' = 2, 'SLOW' = 3, 'BOTTLENECK' = 4, 'INVALID' = 5)
    CODEC(ZSTD(1));
