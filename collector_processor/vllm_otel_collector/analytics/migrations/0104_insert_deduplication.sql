-- As 0003 for the tables the analytics processor writes and the rollups its materialized views feed.
ALTER TABLE ${db}.llm_requests ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE ${db}.span_levels ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE ${db}.llm_requests_1m ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE ${db}.llm_requests_1h ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
