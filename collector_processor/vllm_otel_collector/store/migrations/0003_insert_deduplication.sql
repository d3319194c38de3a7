-- Idempotent re-inserts: the collector gives every batch insert an insert_deduplication_token (recorded in its spool
-- before the first attempt), so a batch inserted again after a crash or a lost confirmation is dropped here instead of
-- stored twice. Plain MergeTree tables keep no insert history unless non_replicated_deduplication_window > 0
-- (Replicated* tables keep one by default); materialized-view targets need it too. 10000 = recent inserts remembered.
ALTER TABLE ${traces} ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE ${db}.${traces_name}_trace_id_ts ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE ${gauge} ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE ${sum} ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE ${histogram} ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
