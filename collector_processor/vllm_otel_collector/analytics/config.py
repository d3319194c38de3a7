"""Analytics configuration: performance-level thresholds, alert rules, retention, webhook.

Loaded from a YAML file (``analytics:`` section of the collector config, or a file of its own) into pydantic models;
every field has a default, so an empty file gives the behaviour documented in ``docs/analytics.md``.

Threshold defaults (seconds) are the project's starting points from issue 5, meant to be tuned per deployment:
TTFT 2 s (the issue's "TTFT p95 > 2 s" alert), TPOT 0.1 s (10 tokens/s, faster than reading speed), e2e 30 s,
queue 1 s, model load 120 s, and voice-pipeline stages stt_processing 0.5 s, llm_response 1 s, tts_synthesis 0.5 s
(a ~2 s voice-to-voice turn budget).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.yamlfile import read_yaml

#: Metrics a level rule may name — those with a level column: request metrics (``llm_requests.TTFTLevel`` …, seconds
#: from request spans); ``duration`` is any span's Duration (``span_levels``, seconds); ``load`` is a model load's
#: total seconds (``llm_model_loads.LoadLevel``). With the SLO metrics, ``analytics.sqlnames.METRICS``.
REQUEST_METRICS = ("ttft", "tpot", "e2e", "queue")
LEVEL_METRICS = REQUEST_METRICS + ("duration", "load")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LevelThreshold(_Strict):
    """Threshold for one (span-name glob, metric). First match in list order wins."""

    span: str = "*"
    metric: Literal["ttft", "tpot", "e2e", "queue", "duration", "load"]
    threshold_seconds: float = Field(gt=0)


DEFAULT_LEVELS: list[dict[str, Any]] = [
    {"span": "*", "metric": "ttft", "threshold_seconds": 2.0},
    {"span": "*", "metric": "tpot", "threshold_seconds": 0.1},
    {"span": "*", "metric": "e2e", "threshold_seconds": 30.0},
    {"span": "*", "metric": "queue", "threshold_seconds": 1.0},
    {"span": "*", "metric": "load", "threshold_seconds": 120.0},
    {"span": "stt_processing", "metric": "duration", "threshold_seconds": 0.5},
    {"span": "llm_response", "metric": "duration", "threshold_seconds": 1.0},
    {"span": "tts_synthesis", "metric": "duration", "threshold_seconds": 0.5},
]


class ModelSLO(_Strict):
    """Latency SLOs of the models whose name (``gen_ai.response.model``, else the request model) matches ``model``
    (a glob; first match in list order wins), in seconds. A request counts toward goodput (DistServe, OSDI 2024:
    requests that met every latency SLO) when it finished ok with TTFT <= ``ttft_seconds`` and TPOT <=
    ``tpot_seconds``. An SLO left out falls back to that metric's level threshold (``levels``), which is also what
    the latency burn-rate alerts count against."""

    model: str = "*"
    ttft_seconds: float | None = Field(None, gt=0)
    tpot_seconds: float | None = Field(None, gt=0)


class _Rule(_Strict):
    name: str
    severity: Literal["info", "warning", "critical"] = "warning"
    window_seconds: int = Field(300, ge=60)


class ThresholdRule(_Rule):
    """``metric op value`` over the window, per (service, model). Metrics: see ``rules.WINDOW_METRICS``."""

    kind: Literal["threshold"] = "threshold"
    metric: str
    op: Literal[">", "<"] = ">"
    value: float
    min_requests: int = Field(1, ge=0)


class ConsecutiveFailuresRule(_Rule):
    """Fires when the newest requests of a (service, model) are more than ``max_failures`` errors/timeouts in a row."""

    kind: Literal["consecutive_failures"] = "consecutive_failures"
    max_failures: int = Field(3, ge=1)
    window_seconds: int = Field(900, ge=60)


class AnomalyRule(_Rule):
    """Robust z-score of the current window's median vs the per-minute medians of the baseline window."""

    kind: Literal["anomaly"] = "anomaly"
    metric: Literal["ttft", "tpot", "e2e", "tokens_per_second"]
    z_threshold: float = Field(3.5, gt=0)
    baseline_seconds: int = Field(3600, ge=600)
    min_baseline_points: int = Field(10, ge=3)


class BurnRateRule(_Rule):
    """Multiwindow burn-rate alert (SRE workbook ch. 5): long AND short window burn > ``factor``."""

    kind: Literal["burn_rate"] = "burn_rate"
    slo: Literal["error", "latency", "goodput"]
    objective: float = Field(0.99, gt=0, lt=1)
    long_seconds: int = Field(3600, ge=60)
    short_seconds: int = Field(300, ge=60)
    factor: float = Field(14.4, gt=0)
    window_seconds: int = Field(3600, ge=60)


class BottleneckRule(_Rule):
    """Fires when e2e p95 exceeds the e2e level threshold; names the dominant phase (queue/prefill/decode)."""

    kind: Literal["bottleneck"] = "bottleneck"
    min_requests: int = Field(1, ge=1)


class ModelLoadRule(_Rule):
    """Latest engine start per (service, model): compile-cache miss, or load slower than the ``load`` threshold."""

    kind: Literal["model_load"] = "model_load"
    check: Literal["compile_cache_miss", "cold_start"]
    window_seconds: int = Field(86400, ge=60)


class GoodputRule(_Rule):
    """Fires when the goodput ratio (requests that met their model's SLOs / requests) of a (service, model) over the
    window is below ``min_ratio``, with at least ``min_requests`` requests."""

    kind: Literal["goodput"] = "goodput"
    min_ratio: float = Field(0.9, gt=0, le=1)
    min_requests: int = Field(10, ge=1)


Rule = Annotated[
    Union[ThresholdRule, ConsecutiveFailuresRule, AnomalyRule, BurnRateRule, BottleneckRule, ModelLoadRule,
          GoodputRule],
    Field(discriminator="kind"),
]

DEFAULT_RULES: list[dict[str, Any]] = [
    {"kind": "threshold", "name": "TTFTP95High", "metric": "ttft_p95", "op": ">", "value": 2.0},
    {"kind": "threshold", "name": "ErrorRateHigh", "metric": "error_rate", "op": ">", "value": 0.10,
     "severity": "critical"},
    {"kind": "threshold", "name": "ProcessMemoryHigh", "metric": "process_memory_bytes", "op": ">",
     "value": 4 * 1024**3, "min_requests": 0},
    {"kind": "threshold", "name": "ThroughputLow", "metric": "tokens_per_second", "op": "<", "value": 5.0},
    {"kind": "threshold", "name": "TimeoutsPerMinuteHigh", "metric": "timeouts_per_minute", "op": ">", "value": 5.0,
     "window_seconds": 60},
    {"kind": "threshold", "name": "SuccessRateLow", "metric": "success_rate", "op": "<", "value": 0.90,
     "severity": "critical"},
    {"kind": "consecutive_failures", "name": "ConsecutiveFailures", "max_failures": 3, "severity": "critical"},
    {"kind": "anomaly", "name": "TTFTAnomaly", "metric": "ttft"},
    {"kind": "anomaly", "name": "TPOTAnomaly", "metric": "tpot"},
    {"kind": "anomaly", "name": "E2EAnomaly", "metric": "e2e"},
    {"kind": "anomaly", "name": "ThroughputAnomaly", "metric": "tokens_per_second"},
    {"kind": "burn_rate", "name": "ErrorBudgetBurnFast", "slo": "error", "severity": "critical"},
    {"kind": "burn_rate", "name": "ErrorBudgetBurnSlow", "slo": "error", "long_seconds": 21600,
     "short_seconds": 1800, "factor": 6.0, "window_seconds": 21600},
    {"kind": "burn_rate", "name": "LatencyBudgetBurnFast", "slo": "latency", "objective": 0.95,
     "severity": "critical"},
    {"kind": "burn_rate", "name": "LatencyBudgetBurnSlow", "slo": "latency", "objective": 0.95,
     "long_seconds": 21600, "short_seconds": 1800, "factor": 6.0, "window_seconds": 21600},
    {"kind": "bottleneck", "name": "LatencyBottleneck"},
    {"kind": "model_load", "name": "CompileCacheMiss", "check": "compile_cache_miss", "severity": "info"},
    {"kind": "model_load", "name": "SlowColdStart", "check": "cold_start", "severity": "info"},
    {"kind": "goodput", "name": "GoodputLow", "min_ratio": 0.9},
]


class RetentionDays(_Strict):
    """TTL in days per derived table; 0 keeps rows forever."""

    llm_requests: int = Field(30, ge=0)
    span_levels: int = Field(30, ge=0)
    llm_requests_1m: int = Field(90, ge=0)
    llm_requests_5m: int = Field(180, ge=0)
    llm_requests_1h: int = Field(730, ge=0)
    llm_model_loads: int = Field(365, ge=0)
    llm_alerts: int = Field(365, ge=0)


class AnalyticsConfig(_Strict):
    """Everything the analytics plugin reads. See ``docs/analytics.md``."""

    levels: list[LevelThreshold] = Field(default_factory=lambda: [LevelThreshold(**d) for d in DEFAULT_LEVELS])
    rules: list[Rule] = Field(default_factory=lambda: [_RULE_ADAPTER(d) for d in DEFAULT_RULES])
    retention_days: RetentionDays = Field(default_factory=RetentionDays)
    webhook_url: str | None = None
    webhook_timeout_seconds: float = Field(5.0, gt=0)
    evaluation_interval_seconds: float = Field(30.0, gt=0)
    model_load_settle_seconds: float = Field(30.0, ge=0)
    model_load_lookback_seconds: float = Field(86400.0, gt=0)
    stats_window_seconds: int = Field(300, ge=1)
    sla_seconds: float = Field(2.0, gt=0)
    #: Goodput SLOs per model (empty: every model's SLO is its TTFT and TPOT level thresholds).
    slos: list[ModelSLO] = Field(default_factory=list)
    #: Cause rules (docs/analytics.md, "Causes and goodput"): a request is slow against its baseline when its E2E
    #: exceeds ``cause_slow_factor`` x its expected E2E + ``cause_min_excess_seconds``. The factor 2 is this project's
    #: choice (twice the model's median for that prompt length: well outside the noise of a batch's step time).
    cause_slow_factor: float = Field(2.0, gt=1)
    cause_min_excess_seconds: float = Field(0.05, ge=0)
    #: Baselines: medians of the last ``baseline_seconds`` of ok requests, per model and prompt-length bucket with
    #: at least ``baseline_min_requests`` requests.
    baseline_seconds: int = Field(3600, ge=60)
    baseline_min_requests: int = Field(20, ge=1)

    @field_validator("levels")
    @classmethod
    def _at_most_4_globs_per_metric(cls, levels: list[LevelThreshold]) -> list[LevelThreshold]:
        """The materialized views match at most 4 wildcard globs per metric besides ``*`` and exact span names
        (analytics/levels.py: GLOB_SLOTS), which are unlimited."""
        from vllm_otel_collector.analytics.levels import compile_lookup

        entries = [(e.span, e.metric, e.threshold_seconds) for e in levels]
        for metric in {e.metric for e in levels}:
            compile_lookup(entries, metric)  # ValueError: too many wildcard globs
        return levels

    @field_validator("slos")
    @classmethod
    def _at_most_4_model_globs(cls, slos: list[ModelSLO]) -> list[ModelSLO]:
        """The views match at most 4 wildcard model globs per SLO metric besides ``*`` and exact names."""
        from vllm_otel_collector.analytics.levels import compile_lookup

        entries = slo_entries(slos)
        for metric in {m for _, m, _ in entries}:
            compile_lookup(entries, metric)
        return slos

    def threshold_entries(self) -> list[tuple[str, str, float]]:
        """Level thresholds then SLOs as ``(glob, metric, seconds)`` in config order: what ``llm_level_lookup``
        holds (SLO metrics ``slo_ttft``/``slo_tpot`` match model names, the others span names)."""
        return [(e.span, e.metric, e.threshold_seconds) for e in self.levels] + slo_entries(self.slos)

    @classmethod
    def load(cls, source: Any = None) -> "AnalyticsConfig":
        """Build from ``None`` (defaults), a dict, a YAML path, an ``AnalyticsConfig``, or an object with an
        ``analytics`` attribute holding one of those (the collector's config).

        A dict/YAML with a top-level ``analytics`` key uses that section. Raises ``UserError`` on a missing file or
        invalid values (one line naming the field).
        """
        if isinstance(source, cls):
            return source
        if source is None:
            return cls()
        if hasattr(source, "analytics") and not isinstance(source, (dict, str, Path)):
            return cls.load(getattr(source, "analytics"))
        if isinstance(source, (str, Path)):
            source = read_yaml(Path(source), "analytics config")
        if not isinstance(source, dict):
            raise UserError(f"analytics config must be a mapping, got {type(source).__name__}")
        if "analytics" in source and isinstance(source["analytics"], dict):
            source = source["analytics"]
        if "file" in source:  # {file: path.yaml, ...overrides}
            base = cls.load(Path(source["file"])).model_dump()
            source = {**base, **{k: v for k, v in source.items() if k != "file"}}
        try:
            return cls.model_validate(source)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UserError(f"invalid analytics config at {where}: {err['msg']}") from None


def slo_entries(slos: list[ModelSLO]) -> list[tuple[str, str, float]]:
    """``(model glob, slo_ttft|slo_tpot, seconds)`` of ``slos`` in config order (SLOs left out are not listed)."""
    out: list[tuple[str, str, float]] = []
    for slo in slos:
        if slo.ttft_seconds is not None:
            out.append((slo.model, "slo_ttft", slo.ttft_seconds))
        if slo.tpot_seconds is not None:
            out.append((slo.model, "slo_tpot", slo.tpot_seconds))
    return out


def _RULE_ADAPTER(data: dict[str, Any]):
    from pydantic import TypeAdapter

    return TypeAdapter(Rule).validate_python(data)
