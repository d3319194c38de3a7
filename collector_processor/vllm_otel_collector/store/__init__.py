"""ClickHouse storage: the :class:`Store` (single owner of ClickHouse access) and the migration runner."""

from vllm_otel_collector.store.migrations import CORE, CORE_MAX_VERSION, load_migrations, migrate, schema_is_current
from vllm_otel_collector.store.store import DEFAULT_DATABASE, Store, redact_dsn

__all__ = ["CORE", "CORE_MAX_VERSION", "DEFAULT_DATABASE", "Store", "load_migrations", "migrate", "redact_dsn", "schema_is_current"]
