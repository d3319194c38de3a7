"""vLLM's engine metric set over OTLP, from the same stats objects vLLM hands its Prometheus stat logger.

Three stages, so that vLLM's event loop pays (almost) nothing:

1. **Enqueue** (event loop, every engine step): :meth:`.stat_logger.VLLMOtelStatLogger.record` puts a reference to
   vLLM's ``SchedulerStats`` / ``IterationStats`` / ``MultiModalCacheStats`` into :data:`AGGREGATOR`'s queue (a
   :class:`..batcher.Batcher`; vLLM builds fresh stats objects per step and never touches them after ``record``).
   Bounded by :data:`MAX_PENDING`; beyond it a step is dropped and counted in ``vllm_otel.engine_stats.dropped``.
2. **Convert** (pure, :mod:`.facts`): :func:`.facts.step_facts` reads one step's stats into plain values and
   :func:`.facts.step_records` expands them into ``(metric, extra attributes, value)`` records with exactly the
   semantics of ``PrometheusStatLogger.record``.
3. **Aggregate and record** (off the event loop): the queue's thread (every :data:`DRAIN_INTERVAL_S` while steps
   come), a metric collection that has steps queued (the observable callbacks drain first), and the flush chain
   (:mod:`..handoff.sink`) handle the queued items, so ``MeterProvider.force_flush()`` / ``shutdown()`` include every
   step recorded before them. Counters and gauges are our own sums / latest values exposed through observable
   instruments (no SDK call per step); histogram values go to SDK histograms (one ``record`` per value). With a
   telemetry child, :attr:`EngineAggregator.sink` sends only the step facts there, one message per batch; the child
   expands, aggregates and records them.

Bucket boundaries of the mirrored histograms are vLLM's own (``vllm.v1.metrics.buckets.histogram_buckets``, incl.
``--custom-histogram-buckets``), so bucket counts match ``/metrics`` too. Attributes: ``vllm.engine.index`` (the
Prometheus ``engine`` label) and ``gen_ai.request.model`` (``model_name``), plus the metric's own label.
vLLM's TTFT, e2e and per-request TPOT histograms are not mirrored here: the GenAI semconv metrics
(``gen_ai.server.*``, recorded per client request by :mod:`..request.emit`) are their OTel form.
Not mirrored: KV-connector / EC-connector specific metrics (``kv_connector_stats`` dicts, connector-defined names) and
the diffusion-model variants of the spec-decode counters.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.batcher import Batcher
from opentelemetry.instrumentation.vllm.engine.facts import initial_records, sleep_records, step_facts, step_records
from opentelemetry.instrumentation.vllm.engine.table import COUNTER, GAUGE, METRICS, EngineInfo, Record
from opentelemetry.instrumentation.vllm.safety import timed
from opentelemetry.instrumentation.vllm.settings import ENV_ENGINE_HISTOGRAMS, env_flag

#: Bound on queued stat-logger items (steps). At 100 engine steps/s this is 200 s of stats; the thread drains every 5 s.
MAX_PENDING = 20_000
#: Seconds the drain thread lingers after the first queued step (collection and flushes drain too). Few large drains
#: cost less than many small ones: each wake-up of a cold thread on a busy frontend costs more than converting a step.
DRAIN_INTERVAL_S = 5.0
_INF = float("inf")

# ---- items queued by the stat logger ------------------------------------------------------------------------------
# (kind, info, engine_idx, a, b, c): STEP (scheduler, iteration, mm), SLEEP (sleep, level), ADMISSION (reason),
# INIT (no payload; engine_idx is None for all engines of the logger).
STEP, SLEEP, ADMISSION, INIT = 0, 1, 2, 3


class EngineAggregator:
    """Process-wide sums (counters), latest values (gauges) and SDK histograms for the engine metric set.

    ``bind(meter)`` registers the observable counters/gauges on a meter (idempotent per meter); histograms are
    created on the latest bound meter with the boundaries of the first engine seen. Thread-safe: one lock around
    draining and reading; the event loop never takes it.
    """

    def __init__(self, start_thread: bool = True) -> None:
        #: Queued stat-logger items, handled in batches (:meth:`_handle`) by the drain thread, a collection or a flush.
        self.queue = Batcher("vllm-otel-engine-metrics", self._handle, linger_s=DRAIN_INTERVAL_S,
                             max_batch=MAX_PENDING, max_queued=MAX_PENDING, hook="engine_metrics.drain",
                             start_thread=start_thread)
        #: Set by the instrumentor in telemetry-child mode: ``sink(batch, dropped) -> bool`` takes the drained items
        #: ``[(info, engines, is_step, payload), ...]`` (see :func:`records_of`) to the child; False (child down)
        #: means apply them here.
        self.sink: Callable[[list, int], bool] | None = None
        self._lock = threading.RLock()
        self._counters: dict[str, dict[tuple, float]] = {}
        self._gauges: dict[str, dict[tuple, float]] = {}
        self._attrs: dict[tuple, dict[str, Any]] = {}
        self._meters: list[Meter] = []
        self._hists: dict[str, Any] = {}
        self._hist_meter: Meter | None = None
        self._histograms_on = True
        self._dropped = 0

    # -- wiring ---------------------------------------------------------------------------------------------------
    def bind(self, meter: Meter) -> None:
        """Create the observable instruments on ``meter`` (once per meter)."""
        self._histograms_on = env_flag(ENV_ENGINE_HISTOGRAMS, True)
        with self._lock:
            if self._hist_meter is not meter:
                self._hist_meter, self._hists = meter, {}
            if any(m is meter for m in self._meters):
                return
            self._meters.append(meter)
            for name, (kind, unit, desc, _) in METRICS.items():
                if kind == COUNTER:
                    meter.create_observable_counter(name, [self._callback(name, self._counters)], unit=unit,
                                                    description=desc)
                elif kind == GAUGE:
                    meter.create_observable_gauge(name, [self._callback(name, self._gauges)], unit=unit,
                                                  description=desc)

    def _callback(self, name: str, table: dict[str, dict[tuple, float]]) -> Callable[[CallbackOptions],
                                                                                        Iterable[Observation]]:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            if self.queue.queued():  # the first callback of a collection drains (to the child, or here); the rest skip
                self.drain()
            with self._lock:
                values = table.get(name)
                if not values:
                    return []
                return [Observation(v, self._attrs[k]) for k, v in values.items()]

        return observe

    # -- queue side (the stat logger, on vLLM's event loop) ------------------------------------------------------
    def put(self, item: tuple) -> None:
        """Queue one stat-logger item (see :data:`STEP`); a full queue drops it and counts the step."""
        if not self.queue.put(item):
            self._dropped += 1

    def count_dropped(self) -> None:
        self._dropped += 1

    # -- drain ----------------------------------------------------------------------------------------------------
    def drain(self) -> int:
        """Handle every queued item now, in the calling thread (a collection, a flush); returns how many."""
        return self.queue.drain_now()

    @timed("engine.drain")
    def _handle(self, items: list) -> None:
        """Hand queued items to :attr:`sink` as step facts (the child expands them), or expand and aggregate them
        here (the drain thread, or the thread of :meth:`drain`)."""
        with self._lock:
            batch: list[tuple[EngineInfo, tuple, bool, Any]] = []
            for item in items:
                kind, info, idx = item[0], item[1], item[2]
                if info.bridged:
                    continue
                if kind == STEP:
                    payload: Any = step_facts(info, item[3], item[4], item[5])
                elif kind == SLEEP:
                    payload = sleep_records(item[3], item[4])
                elif kind == ADMISSION:
                    payload = [(sc.METRIC_ADMISSION_REJECTIONS, ((sc.VLLM_ADMISSION_REASON, item[3]),), 1)]
                else:
                    payload = initial_records(info)
                engines = (None,) if kind == ADMISSION else info.engine_indexes if idx is None else (idx,)
                batch.append((info, engines, kind == STEP, payload))
            dropped, self._dropped = self._dropped, 0
            sink = self.sink
            if (batch or dropped) and (sink is None or not sink(batch, dropped)):
                for info, engines, is_step, payload in batch:
                    self.apply(info, engines, records_of(is_step, payload))
                self.add_dropped(dropped)

    def apply(self, info: EngineInfo, engines: Iterable[int | None], records: Iterable[Record]) -> None:
        """Aggregate one step's converted ``records`` for each engine index of ``engines`` (None: no engine
        attribute, e.g. admission rejections)."""
        with self._lock:
            for engine in engines:
                for name, extra, value in records:
                    self._apply_one(info, engine, name, extra, value)

    def add_dropped(self, steps: int) -> None:
        """Count ``steps`` engine steps whose stats were dropped (queue full) in ``vllm_otel.engine_stats.dropped``."""
        if steps:
            with self._lock:
                self._add(sc.METRIC_ENGINE_STATS_DROPPED, (), steps)

    def _key(self, info: EngineInfo, engine: int | None, extra: tuple) -> tuple:
        key = (info.model, engine, extra)
        if key not in self._attrs:
            attrs: dict[str, Any] = {sc.REQUEST_MODEL: info.model}
            if engine is not None:
                attrs[sc.VLLM_ENGINE_INDEX] = engine
            attrs.update(extra)
            self._attrs[key] = attrs
        return key

    def _add(self, name: str, key: tuple, value: float) -> None:
        if key not in self._attrs:
            self._attrs[key] = {}
        table = self._counters.setdefault(name, {})
        table[key] = table.get(key, 0) + value

    def _apply_one(self, info: EngineInfo, engine: int | None, name: str, extra: tuple | None, value: Any) -> None:
        if type(value) is list:  # a histogram's observations of one step
            for v in value:
                self._apply_one(info, engine, name, extra, v)
            return
        kind = METRICS[name][0]
        if not (0 <= value < _INF) and not (kind == GAUGE and extra is None):
            # NaN, ±Inf, negative: the SDK would drop a histogram value with a warning per value, a negative increment
            # would make a cumulative counter go down, a NaN gauge is meaningless. Counted instead, per metric.
            table = self._counters.setdefault(sc.METRIC_ENGINE_VALUES_REJECTED, {})
            key = (None, None, ((sc.VLLM_OTEL_METRIC, name),))
            if key not in self._attrs:
                self._attrs[key] = {sc.VLLM_OTEL_METRIC: name}
            table[key] = table.get(key, 0) + 1
            return
        if kind == COUNTER:
            table = self._counters.setdefault(name, {})
            key = self._key(info, engine, extra)
            table[key] = table.get(key, 0) + value
        elif kind == GAUGE:
            table = self._gauges.setdefault(name, {})
            if extra is None:  # replaced family: drop this engine's previous values
                for k in [k for k in table if k[0] == info.model and k[1] == engine]:
                    del table[k]
                return
            table[self._key(info, engine, extra)] = value
        elif self._histograms_on:
            hist = self._hists.get(name)
            if hist is None:
                hist = self._histogram(name, info)
                if hist is None:
                    return
            hist.record(value, self._attrs[self._key(info, engine, extra)])

    def _histogram(self, name: str, info: EngineInfo) -> Any:
        meter = self._hist_meter
        if meter is None:
            return None
        _, unit, desc, family = METRICS[name]
        bounds = info.buckets.get(family) if family else None
        hist = meter.create_histogram(name, unit=unit, description=desc,
                                      explicit_bucket_boundaries_advisory=bounds) if bounds else \
            meter.create_histogram(name, unit=unit, description=desc)
        self._hists[name] = hist
        return hist


#: The process's aggregator: the stat logger queues here, the instrumentor binds it to the meter.
AGGREGATOR = EngineAggregator()


def records_of(is_step: bool, payload: Any) -> list[Record]:
    """A drained item's records: ``payload`` is :func:`.facts.step_facts` of a step (``is_step``) or already
    records."""
    return step_records(payload) if is_step else payload
