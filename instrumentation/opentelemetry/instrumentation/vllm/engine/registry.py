"""vLLM's engine metric set read from vLLM's own Prometheus registry: no per-step work of ours.

vLLM's ``PrometheusStatLogger`` already aggregates every engine metric we mirror (counters, gauges, histograms with
vLLM's buckets) in the process that serves ``/metrics``. Reading that registry once per metric collection and
translating it (:func:`translate`) gives the same numbers as ``/metrics`` by construction, exactly, with nothing of
ours on vLLM's event loop per engine step. Two stages, so the API server pays only for the first:

1. :func:`snapshot` (the process that holds the registry; a few ms per collection, never per step): the ``vllm:``
   families we mirror as plain tuples (wire-safe, see :mod:`..handoff.wire`).
2. :func:`translate` (the process that exports: the telemetry child, or here): OTel points — Prometheus counters →
   monotonic cumulative sums (start time = the series' ``_created`` sample, else when the bridge started),
   gauges → gauges, histograms → explicit-bucket histograms with vLLM's bounds and per-bucket counts (Prometheus
   buckets are cumulative: ``le`` counts are differenced; no re-aggregation), no min/max (Prometheus has none).

Which registry (:func:`vllm_registry`): vLLM's ``get_prometheus_registry()`` — the global ``REGISTRY``, or with
``PROMETHEUS_MULTIPROC_DIR`` set (``--api-server-count > 1``) a ``MultiProcessCollector`` over every API server's
files, exactly what ``/metrics`` shows. In that mode only the API server with ``client_index`` 0 exports the engine
set (every API server would otherwise export the same totals).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.engine.table import (COUNTER, GAUGE, HISTOGRAM, METRICS, PROMETHEUS,
                                                            PROMETHEUS_CACHE_CONFIG)

#: A snapshot: ``[(family, type, [(sample name, ((label, value), ...), value), ...]), ...]``.
Families = list
_PROM_KIND = {"counter": COUNTER, "gauge": GAUGE, "histogram": HISTOGRAM}
_WANTED = frozenset(PROMETHEUS) | {PROMETHEUS_CACHE_CONFIG}
#: Every sample name of those families (a restricted registry keeps only the samples named).
_WANTED_SAMPLES = frozenset(f + s for f in _WANTED for s in ("", "_total", "_created", "_bucket", "_count", "_sum"))


def vllm_registry() -> Any:
    """The registry vLLM's ``/metrics`` serves (feature-detected: ``vllm.v1.metrics.prometheus`` when present, else
    ``prometheus_client.REGISTRY``). Raises ``ImportError`` without ``prometheus_client``."""
    try:
        from vllm.v1.metrics.prometheus import get_prometheus_registry
    except ImportError:
        from prometheus_client import REGISTRY

        return REGISTRY
    return get_prometheus_registry()


class EngineCollectors:
    """The ``vllm:`` collectors an engine's ``PrometheusStatLogger`` registered, kept when the engine is built: a
    later logger in the same process (a second ``LLM``) unregisters them from the global registry, but the first
    engine still updates them. ``collect()`` as a registry's. ``None`` from :meth:`capture` when the registry does
    not say which collectors it holds (the multiprocess registry: collected whole)."""

    def __init__(self, collectors: list) -> None:
        self.collectors = collectors

    @classmethod
    def capture(cls, registry: Any) -> "EngineCollectors | None":
        mapping = getattr(registry, "_collector_to_names", None)  # prometheus_client's own index (vLLM reads it too)
        if not isinstance(mapping, dict):
            return None
        found = [c for c, names in list(mapping.items()) if any(str(n).startswith("vllm:") for n in names)]
        return cls(found) if found else None

    def add(self, other: "EngineCollectors") -> None:
        self.collectors += [c for c in other.collectors if all(c is not k for k in self.collectors)]

    def collect(self) -> Any:
        for c in self.collectors:
            yield from c.collect()


def snapshot(registry: Any) -> Families:
    """The mirrored ``vllm:`` families of ``registry`` (anything with ``collect()``, e.g. a
    ``prometheus_client.CollectorRegistry``) as plain tuples; other families are skipped. Only the collectors of
    those families are asked (``restricted_registry``: the global registry also holds the process and GC
    collectors, which read ``/proc``); a registry that cannot tell its collectors' names (the multiprocess
    collector) is collected whole."""
    out = _families(registry.restricted_registry(_WANTED_SAMPLES)) if hasattr(registry, "restricted_registry") else []
    return out or _families(registry)


def _families(registry: Any) -> Families:
    out = []
    for family in registry.collect():
        if family.name in _WANTED:
            # labels in the family's own order (label names, then ``le``): the same for every sample of a series
            out.append((family.name, family.type,
                        [(s.name, tuple(s.labels.items()), float(s.value)) for s in family.samples]))
    return out


def translate(families: Families, model: str, default_start_ns: int) -> list[tuple]:
    """OTel points of a :func:`snapshot`: ``[(metric, kind, points), ...]`` with kind from
    :data:`..table.METRICS`; points are ``(attributes, start_ns, value)`` for counters and gauges, ``(attributes,
    start_ns, count, sum, bounds, bucket_counts)`` for histograms (``bounds`` without ``+Inf``; ``len(bucket_counts)
    == len(bounds) + 1``). ``model`` fills ``gen_ai.request.model`` for families without a ``model_name`` label;
    ``default_start_ns`` is the start of series without a ``_created`` sample. Values are vLLM's, as they are (NaN
    and ±Inf pass through: parity with ``/metrics``); a malformed family is skipped, never raised."""
    out = []
    for name, ptype, samples in families:
        try:
            if name == PROMETHEUS_CACHE_CONFIG:
                points = [(_cache_config_attrs(labels, model), default_start_ns, value)
                          for sname, labels, value in samples if sname == name]
                out.append((sc.METRIC_CACHE_CONFIG_INFO, GAUGE, points))
                continue
            metric, label, attr = PROMETHEUS[name]
            kind = METRICS[metric][0]
            if _PROM_KIND.get(ptype) != kind:
                continue  # vLLM changed the type: not ours to guess
            if kind == HISTOGRAM:
                out.append((metric, kind, _histogram_points(name, samples, label, attr, model, default_start_ns)))
            else:
                out.append((metric, kind, _number_points(name, samples, kind, label, attr, model,
                                                         default_start_ns)))
        except (KeyError, ValueError, TypeError):
            continue
    return out


#: Attributes that are integers on the stat-logger source too (Prometheus labels are strings): the same series
#: whichever source exports them.
_INT_ATTRS = frozenset({sc.VLLM_SPEC_POSITION})


def _attrs(labels: Iterable[tuple[str, str]], label: str | None, attr: str | None, model: str) -> dict[str, Any]:
    d = dict(labels)
    out: dict[str, Any] = {sc.REQUEST_MODEL: d.get("model_name", model)}
    engine = d.get("engine")
    if engine not in (None, ""):
        out[sc.VLLM_ENGINE_INDEX] = int(engine)
    if label is not None:
        value = d.get(label, "")
        out[attr] = int(value) if attr in _INT_ATTRS else value
    return out


def _cache_config_attrs(labels: Iterable[tuple[str, str]], model: str) -> dict[str, Any]:
    out: dict[str, Any] = {sc.REQUEST_MODEL: model}
    for k, v in labels:
        if k == "engine":
            if v != "":
                out[sc.VLLM_ENGINE_INDEX] = int(v)
        else:
            out[sc.VLLM_CACHE_CONFIG_PREFIX + k] = v
    return out


def _created(samples: list, name: str) -> dict[tuple, int]:
    """Series start times from ``_created`` samples (seconds since the epoch → ns), keyed by labels."""
    suffix = name + "_created"
    return {labels: int(value * 1e9) for sname, labels, value in samples
            if sname == suffix and math.isfinite(value)}


def _number_points(name: str, samples: list, kind: str, label: str | None, attr: str | None, model: str,
                   default_start_ns: int) -> list[tuple]:
    value_name = name + "_total" if kind == COUNTER else name
    created = _created(samples, name)
    return [(_attrs(labels, label, attr, model), created.get(labels, default_start_ns), value)
            for sname, labels, value in samples if sname == value_name]


def _histogram_points(name: str, samples: list, label: str | None, attr: str | None, model: str,
                      default_start_ns: int) -> list[tuple]:
    created = _created(samples, name)
    series: dict[tuple, dict[str, Any]] = {}
    for sname, labels, value in samples:
        suffix = sname[len(name):]
        if suffix == "_bucket":
            le = dict(labels)["le"]
            key = tuple(kv for kv in labels if kv[0] != "le")
            series.setdefault(key, {}).setdefault("le", []).append((float(le), value))
        elif suffix in ("_count", "_sum"):
            series.setdefault(labels, {})[suffix] = value
    points = []
    for labels, s in series.items():
        les = sorted(s.get("le", ()))
        if not les or les[-1][0] != math.inf:
            continue  # no +Inf bucket: not a Prometheus histogram
        bounds = [b for b, _ in les[:-1]]
        cumulative = [c for _, c in les]
        counts = [int(cumulative[0])] + [int(cumulative[i] - cumulative[i - 1]) for i in range(1, len(cumulative))]
        count = int(s.get("_count", cumulative[-1]))
        points.append((_attrs(labels, label, attr, model), created.get(labels, default_start_ns), count,
                       s.get("_sum", 0.0), bounds, counts))
    return points
