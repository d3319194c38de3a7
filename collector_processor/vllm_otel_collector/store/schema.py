"""What the contrib tables of a database look like, and how SQL must read them: the schema :class:`Profile`.

The OpenTelemetry Collector contrib ``clickhouseexporter`` writes tables whose names and column types vary with its
version and configuration (checked in its source, ``exporter/clickhouseexporter/internal/sqltemplates``):

- table names are configurable (``traces_table_name``, ``metrics_tables.<kind>.name``);
- ``json: true`` makes every attribute column ``JSON`` (typed values, dotted keys become nested paths) instead of
  ``Map(LowCardinality(String), String)`` (values as pdata ``AsString`` strings, a missing key reads ``''``);
- metrics tables have ``MetricName`` ``String`` or ``LowCardinality(String)`` and ``TimeUnix``/``StartTimeUnix``
  ``DateTime64(9)`` or ``DateTime``; ``Duration`` of older traces tables is ``Int64``, newer ``UInt64``;
- the traces ``ORDER BY`` has or lacks ``Timestamp``; newer tables carry ALIAS columns and text indexes.

:func:`inspect` reads what is really there (``system.columns``, ``system.tables``: the same as ``DESC TABLE``) and
either returns a :class:`Profile` or a one-line reason why a table cannot be served. ``vllm-otel migrate`` records the
profile in ``vllm_otel_settings`` (core migration 0005); readers get it with :func:`profile` (cached per store) and
build their SQL with its helpers (:meth:`Profile.attr`, :meth:`Profile.attrs_key`, :meth:`Profile.nanos`), so one
query text serves every variant.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass, field, fields, replace

from vllm_otel_collector.errors import UserError

MAP, JSON = "map", "json"
#: The contrib exporter's default table names (and ours).
DEFAULT_TABLES = {"traces": "otel_traces", "gauge": "otel_metrics_gauge", "sum": "otel_metrics_sum",
                  "histogram": "otel_metrics_histogram", "exponential_histogram": "otel_metrics_exponential_histogram",
                  "summary": "otel_metrics_summary"}
#: The exponential-histogram table's name in newer exporters' defaults (``metrics_tables.exponential_histogram``):
#: used when it exists and the older default does not, and no name was given.
EXP_HISTOGRAM_NEW_DEFAULT = "otel_metrics_exp_histogram"
SETTINGS_TABLE = "vllm_otel_settings"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def identifier(name: str, what: str = "table") -> str:
    """``name`` when it is a plain ClickHouse identifier (letters, digits, ``_``; not starting with a digit).

    Raises:
        UserError: anything else (one line), so a table name is never spliced into SQL unchecked.
    """
    if not isinstance(name, str) or not _IDENT.match(name) or len(name) > 200:
        raise UserError(f"invalid {what} name {name!r} (letters, digits and _ only)")
    return name


def sql_string(value: str) -> str:
    """``value`` as a ClickHouse string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Profile:
    """Names and attribute modes of the contrib tables of one database.

    Attributes:
        traces / gauge / sum / histogram / exponential_histogram / summary: table names (plain identifiers).
        traces_attributes / metrics_attributes: ``map`` (``Map(LowCardinality(String), String)``) or ``json``.
    """

    traces: str = DEFAULT_TABLES["traces"]
    gauge: str = DEFAULT_TABLES["gauge"]
    sum: str = DEFAULT_TABLES["sum"]
    histogram: str = DEFAULT_TABLES["histogram"]
    exponential_histogram: str = DEFAULT_TABLES["exponential_histogram"]
    summary: str = DEFAULT_TABLES["summary"]
    traces_attributes: str = MAP
    metrics_attributes: str = MAP

    def __post_init__(self):
        for name in DEFAULT_TABLES:
            identifier(getattr(self, name))
        for mode in (self.traces_attributes, self.metrics_attributes):
            if mode not in (MAP, JSON):
                raise UserError(f"attribute mode must be {MAP!r} or {JSON!r}, got {mode!r}")

    # -- SQL helpers (every reader of the contrib tables goes through these) ------------------------------------------
    def attr(self, column: str, key: str, mode: str | None = None) -> str:
        """SQL for attribute ``key`` of ``column`` as a String, ``''`` when missing (the Map mode's own semantics).

        Map: ``col['key']``. JSON: ``toString(col.`key`)`` — typed values print as ClickHouse prints them (floats in
        shortest round-trip form, bools ``true``/``false``, arrays ``['a']``), which parse to the same numbers."""
        mode = mode or self._mode(column)
        if mode == JSON:
            return f"toString({column}.`{key.replace('`', '``')}`)"
        return f"{column}[{sql_string(key)}]"

    def has(self, column: str, key: str, mode: str | None = None) -> str:
        """SQL that is 1 when ``column`` carries ``key`` (even with an empty value), else 0."""
        mode = mode or self._mode(column)
        if mode == JSON:
            return f"isNotNull({column}.`{key.replace('`', '``')}`)"
        return f"mapContains({column}, {sql_string(key)})"

    def attrs_key(self, column: str) -> str:
        """SQL for a comparable, hashable form of a whole attribute column (a series key): the Map itself, or the
        JSON column's canonical JSON text."""
        return f"toJSONString({column})" if self._mode(column) == JSON else column

    @staticmethod
    def nanos(column: str) -> str:
        """``column`` (``DateTime64(n)`` or ``DateTime``) as Int64 nanoseconds since the epoch."""
        return f"toUnixTimestamp64Nano(toDateTime64({column}, 9))"

    def _mode(self, column: str) -> str:
        if column in ("SpanAttributes", "ResourceAttributes") or column.startswith(("Events.", "Links.")):
            return self.traces_attributes
        return self.metrics_attributes

    def settings(self) -> dict[str, str]:
        """The profile as ``vllm_otel_settings`` rows (key → value)."""
        return {f"profile.{f.name}": getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_settings(cls, rows: dict[str, str]) -> "Profile":
        """Inverse of :meth:`settings`; missing keys keep their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k.removeprefix("profile."): v for k, v in rows.items()
                      if k.startswith("profile.") and k.removeprefix("profile.") in known})


# -- inspection -----------------------------------------------------------------------------------------------------
_STRINGISH = re.compile(r"^(LowCardinality\()?(Nullable\()?(String|FixedString\(\d+\))\)?\)?$")
_INT = re.compile(r"^U?Int(8|16|32|64)$")
_DT64 = re.compile(r"^DateTime64\(\d+(, *'[^']*')?\)$")
_DT = re.compile(r"^DateTime(\('[^']*'\))?$")
_MAP = re.compile(r"^Map\((LowCardinality\()?String\)?, *(LowCardinality\()?String\)?\)$")
_JSON = re.compile(r"^JSON(\(.*\))?$")
_ARR_U64 = re.compile(r"^Array\(UInt64\)$")
_ARR_F64 = re.compile(r"^Array\(Float64\)$")


def _attr_mode(typ: str) -> str | None:
    return MAP if _MAP.match(typ) else JSON if _JSON.match(typ) else None


_TRACES = {"Timestamp": _DT64, "TraceId": _STRINGISH, "SpanId": _STRINGISH, "ParentSpanId": _STRINGISH,
           "SpanName": _STRINGISH, "ServiceName": _STRINGISH, "Duration": _INT, "StatusCode": _STRINGISH,
           "SpanAttributes": None, "ResourceAttributes": None}
_METRIC_COMMON = {"ServiceName": _STRINGISH, "MetricName": _STRINGISH, "TimeUnix": (_DT64, _DT),
                  "StartTimeUnix": (_DT64, _DT), "Attributes": None, "ResourceAttributes": None}
_METRICS = {
    "gauge": {**_METRIC_COMMON, "Value": re.compile(r"^Float64$")},
    "sum": {**_METRIC_COMMON, "Value": re.compile(r"^Float64$"), "AggregationTemporality": _INT},
    "histogram": {**_METRIC_COMMON, "Count": _INT, "Sum": re.compile(r"^Float64$"), "BucketCounts": _ARR_U64,
                  "ExplicitBounds": _ARR_F64, "AggregationTemporality": _INT},
    "exponential_histogram": {**_METRIC_COMMON, "Count": _INT, "Sum": re.compile(r"^Float64$"),
                              "Scale": _INT, "ZeroCount": _INT, "PositiveOffset": _INT,
                              "PositiveBucketCounts": _ARR_U64, "NegativeOffset": _INT,
                              "NegativeBucketCounts": _ARR_U64, "AggregationTemporality": _INT},
    "summary": {**_METRIC_COMMON, "Count": _INT, "Sum": re.compile(r"^Float64$")},
}
_SERVABLE_ENGINES = re.compile(r"^(Replicated|Shared)?(Replacing|Aggregating|Summing|Collapsing|"
                               r"VersionedCollapsing|Coalescing)?MergeTree$")


@dataclass
class TableShape:
    """One table as found: ``exists``, its ``engine``, ``columns`` (name → type) and, when it cannot be served,
    ``problem`` (one line)."""

    name: str
    exists: bool = False
    engine: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    problem: str = ""
    mode: str | None = None


def describe(store, table: str) -> TableShape:
    """``table`` of ``store.database`` as ClickHouse describes it (``system.tables`` + ``system.columns``)."""
    shape = TableShape(table)
    rows = store.query("SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                       parameters={"db": store.database, "t": table}).result_rows
    if not rows:
        return shape
    shape.exists, shape.engine = True, rows[0][0]
    shape.columns = dict(store.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "ORDER BY position", parameters={"db": store.database, "t": table}).result_rows)
    return shape


def _check(shape: TableShape, wanted: dict, kind: str) -> TableShape:
    if not shape.exists:
        return shape
    where = f"{kind} table {shape.name!r}"
    if not _SERVABLE_ENGINES.match(shape.engine):
        hint = (" (materialized views must sit on each shard's local table: run migrate against the local tables "
                "with --cluster)" if shape.engine == "Distributed" else "")
        shape.problem = f"{where} has engine {shape.engine}; only *MergeTree tables can feed the analytics{hint}"
        return shape
    modes = set()
    for col, pattern in wanted.items():
        typ = shape.columns.get(col)
        if typ is None:
            shape.problem = f"{where} has no column {col!r} (not a clickhouseexporter table?)"
            return shape
        if pattern is None:
            mode = _attr_mode(typ)
            if mode is None:
                shape.problem = (f"{where}: column {col} is {typ}; expected Map(LowCardinality(String), String) "
                                 f"or JSON")
                return shape
            modes.add(mode)
            continue
        patterns = pattern if isinstance(pattern, tuple) else (pattern,)
        if not any(p.match(typ) for p in patterns):
            shape.problem = f"{where}: column {col} is {typ}, which the analytics cannot read"
            return shape
    if len(modes) > 1:
        shape.problem = f"{where} mixes Map and JSON attribute columns"
        return shape
    shape.mode = modes.pop() if modes else None
    return shape


def inspect(store, tables: dict[str, str] | None = None, attributes: str | None = None) -> tuple[Profile, list[TableShape]]:
    """Inspect the contrib tables named ``tables`` (kind → name; defaults: :data:`DEFAULT_TABLES`) in
    ``store.database`` and derive the :class:`Profile` that serves them.

    A table that does not exist is fine (``migrate`` creates it, in ``attributes`` mode; default ``map``). The
    attribute mode of existing tables is read from their types; ``attributes``, when given, must agree.

    Returns:
        ``(profile, shapes)``: the profile, and one :class:`TableShape` per table.

    Raises:
        UserError: a table that cannot be served (one line: which table, which column, why), or traces and metrics
            tables that disagree with ``attributes``.
    """
    names = {**DEFAULT_TABLES, **(tables or {})}
    if "exponential_histogram" not in (tables or {}) and not describe(store, names["exponential_histogram"]).exists \
            and describe(store, EXP_HISTOGRAM_NEW_DEFAULT).exists:
        names["exponential_histogram"] = EXP_HISTOGRAM_NEW_DEFAULT
    for kind in names:
        if kind not in DEFAULT_TABLES:
            raise UserError(f"unknown table kind {kind!r}")
        identifier(names[kind])
    shapes = [_check(describe(store, names["traces"]), _TRACES, "traces")]
    shapes += [_check(describe(store, names[k]), _METRICS[k], f"metrics ({k})") for k in _METRICS]
    for shape in shapes:
        if shape.problem:
            raise UserError(shape.problem)
    trace_mode = shapes[0].mode or attributes or MAP
    metric_modes = {s.mode for s in shapes[1:] if s.mode}
    if len(metric_modes) > 1:
        raise UserError("the metrics tables mix Map and JSON attribute columns")
    metric_mode = metric_modes.pop() if metric_modes else attributes or MAP
    for found, what in ((shapes[0].mode, "traces"), (metric_modes and metric_mode, "metrics")):
        if attributes and found and found != attributes:
            raise UserError(f"the {what} tables hold {found} attributes, not {attributes} (drop --attributes or "
                            f"point at other tables)")
    if any(not s.exists for s in shapes) and JSON in (trace_mode, metric_mode) and not all(s.exists for s in shapes):
        missing = ", ".join(s.name for s in shapes if not s.exists)
        if attributes == JSON or JSON in (shapes[0].mode, *metric_modes):
            raise UserError(f"tables {missing} are missing and this database uses JSON attributes: let the exporter "
                            f"create them (create_schema: true once) or create them from its DDL, then migrate")
    return Profile(traces_attributes=trace_mode, metrics_attributes=metric_mode,
                   **{k: names[k] for k in DEFAULT_TABLES}), shapes


# -- the recorded profile --------------------------------------------------------------------------------------------
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def settings_exist(store) -> bool:
    """True when ``vllm_otel_settings`` (core migration 0005) exists in ``store.database``."""
    return bool(store.query("SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                            parameters={"db": store.database, "t": SETTINGS_TABLE}).result_rows[0][0])


def recorded(store) -> Profile | None:
    """The profile ``vllm-otel migrate`` recorded in this database, or None (no settings table, or no profile)."""
    if not settings_exist(store):
        return None
    rows = dict(store.query(f"SELECT Key, argMax(Value, UpdatedAt) FROM {SETTINGS_TABLE} "
                            "WHERE startsWith(Key, 'profile.') GROUP BY Key").result_rows)
    return Profile.from_settings(rows) if rows else None


def record(store, prof: Profile) -> None:
    """Write ``prof`` into ``vllm_otel_settings`` (after core migration 0005) and refresh the cache."""
    import datetime as dt

    rows = prof.settings()
    now = dt.datetime.now(dt.timezone.utc)
    store.insert(SETTINGS_TABLE, {"Key": list(rows), "Value": list(rows.values()), "UpdatedAt": [now] * len(rows)})
    with _CACHE_LOCK:
        _CACHE[store] = prof


def profile(store) -> Profile:
    """The profile readers use for ``store``: the recorded one, else the defaults (our own collector's tables).
    Looked up once per store object (a wrapper exposing ``backing_store`` is looked through)."""
    store = getattr(store, "backing_store", store)
    with _CACHE_LOCK:
        found = _CACHE.get(store)
    if found is not None:
        return found
    try:
        found = recorded(store) or Profile()
    except Exception:  # noqa: BLE001 - an unreadable settings table means "not recorded": the defaults apply
        found = Profile()
    with _CACHE_LOCK:
        _CACHE[store] = found
    return found


def with_tables(prof: Profile, **names: str) -> Profile:
    """``prof`` with some table names replaced (validated)."""
    return replace(prof, **names)
