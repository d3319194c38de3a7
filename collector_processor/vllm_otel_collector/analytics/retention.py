"""Per-table retention: make each derived table's TTL match ``retention_days`` in the analytics config.

Migrations create tables with the collector-wide TTL (``ttl_days``); this job then sets the per-table TTL with
``ALTER TABLE ... MODIFY TTL`` (or ``REMOVE TTL`` for 0 days) only when the current TTL differs, so re-running is free.
``materialize_ttl_after_modify = 0``: existing parts are not rewritten at once; they expire as parts merge/drop.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

#: table → column its TTL is computed from.
TTL_COLUMNS = {"llm_requests": "Timestamp", "span_levels": "Timestamp", "llm_requests_1m": "Bucket",
               "llm_requests_5m": "Bucket", "llm_requests_1h": "Bucket", "llm_model_loads": "Timestamp", "llm_alerts": "Timestamp"}
_TTL_RE = re.compile(r"\bTTL (.+?)(?: SETTINGS |$)")


def ttl_expression(table: str, days: int) -> str:
    """The TTL expression for ``table`` kept ``days`` days ('' for 0 = keep forever)."""
    return f"toDateTime({TTL_COLUMNS[table]}) + toIntervalDay({int(days)})" if days > 0 else ""


def apply_retention(store, retention: dict[str, int], cluster: str | None = None) -> list[str]:
    """Align TTLs with ``retention`` (table → days). Returns the tables altered. Tables that do not exist are skipped."""
    rows = store.query("SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
                       parameters={"db": store.database}).result_rows
    engines = dict(rows)
    on_cluster = f" ON CLUSTER `{cluster}`" if cluster else ""
    changed = []
    for table, days in retention.items():
        if table not in engines or table not in TTL_COLUMNS:
            continue
        m = _TTL_RE.search(engines[table])
        current = m.group(1).strip() if m else ""
        wanted = ttl_expression(table, days)
        if current == wanted:
            continue
        if wanted:
            store.command(f"ALTER TABLE `{table}`{on_cluster} MODIFY TTL {wanted} "
                          "SETTINGS materialize_ttl_after_modify = 0")
        else:
            store.command(f"ALTER TABLE `{table}`{on_cluster} REMOVE TTL")
        log.info("retention of %s set to %s", table, f"{days} days" if days else "forever")
        changed.append(table)
    return changed
